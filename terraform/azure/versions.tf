terraform {
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # Not tested: the provider was not available where this was written (see ../README.md).
      version = ">= 3.0"
    }
  }
}
