terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Tested with 5.100.0 (see ../README.md).
      version = ">= 5.0, < 7.0"
    }
  }
}
