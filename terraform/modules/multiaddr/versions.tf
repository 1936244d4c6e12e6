terraform {
  # No provider: this module only formats a value, so it runs anywhere Terraform does.
  required_version = ">= 1.9"
}
