terraform {
  # 1.9: a variable's validation may refer to other variables.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_vpc_security_group_{ingress,egress}_rule exist and are stable from 5.0 on.
      version = ">= 5.0"
    }
  }
}
