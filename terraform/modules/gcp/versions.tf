terraform {
  # 1.9: a variable's validation may refer to other variables.
  required_version = ">= 1.9"

  required_providers {
    google = {
      source = "hashicorp/google"
      # google_compute_firewall has taken IPv6 source ranges since long before 5.0.
      version = ">= 5.0"
    }
  }
}
