terraform {
  # 1.9: a variable's validation may refer to other variables.
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # Written against the 3.x and 4.x schemas of these two resources, which agree.
      version = ">= 3.0"
    }
  }
}
