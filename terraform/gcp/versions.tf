terraform {
  required_version = ">= 1.9"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Not tested: the provider was not available where this was written (see ../README.md).
      version = ">= 5.0"
    }
  }
}
