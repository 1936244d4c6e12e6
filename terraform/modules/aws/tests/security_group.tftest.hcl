# The security group and its rules, planned and applied against a mock provider.

mock_provider "aws" {}

variables {
  vpc_id = "vpc-0123456789abcdef0"
}

run "defaults_open_9100_to_everyone" {
  command = plan

  assert {
    condition     = aws_security_group.this.name == "p2pcache" && aws_security_group.this.vpc_id == "vpc-0123456789abcdef0"
    error_message = "The group must be named after var.name and sit in var.vpc_id."
  }

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.ipv4) == ["0.0.0.0/0"] && keys(aws_vpc_security_group_ingress_rule.ipv6) == ["::/0"]
    error_message = "By default the port is open to 0.0.0.0/0 and ::/0, and nothing else."
  }

  assert {
    condition = alltrue([
      for rule in concat(values(aws_vpc_security_group_ingress_rule.ipv4), values(aws_vpc_security_group_ingress_rule.ipv6)) :
      rule.ip_protocol == "tcp" && rule.from_port == 9100 && rule.to_port == 9100
    ])
    error_message = "Every ingress rule must open exactly TCP 9100."
  }

  assert {
    condition     = length(aws_vpc_security_group_egress_rule.all_ipv4) == 1 && length(aws_vpc_security_group_egress_rule.all_ipv6) == 1
    error_message = "allow_all_egress defaults to true: the node must reach GitHub and its peers."
  }
}

run "one_rule_per_cidr_and_tags" {
  command = plan

  variables {
    name               = "cache-eu"
    port               = 4001
    allowed_ipv4_cidrs = ["203.0.113.0/24", "198.51.100.0/24"]
    allowed_ipv6_cidrs = []
    allow_all_egress   = false
    tags               = { team = "ci" }
  }

  assert {
    condition     = toset(keys(aws_vpc_security_group_ingress_rule.ipv4)) == toset(["203.0.113.0/24", "198.51.100.0/24"])
    error_message = "Each IPv4 CIDR gets its own ingress rule."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.ipv6) == 0 && length(aws_vpc_security_group_egress_rule.all_ipv4) == 0
    error_message = "No IPv6 rule for an empty list, no egress rule when allow_all_egress is false."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.ipv4["203.0.113.0/24"].from_port == 4001 && aws_vpc_security_group_ingress_rule.ipv4["203.0.113.0/24"].cidr_ipv4 == "203.0.113.0/24"
    error_message = "The rule for 203.0.113.0/24 must open port 4001 to that CIDR."
  }

  assert {
    condition     = aws_security_group.this.tags == tomap({ team = "ci", Name = "cache-eu" })
    error_message = "The group carries var.tags plus a Name tag."
  }
}

run "apply_exposes_identifiers" {
  # Mocked apply: computed attributes get made-up values, so this checks the wiring of outputs.
  variables {
    node_public_ip = "203.0.113.10"
    peer_id        = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
  }

  assert {
    condition     = output.security_group_id == aws_security_group.this.id && output.security_group_arn == aws_security_group.this.arn
    error_message = "security_group_id and security_group_arn must come from the group."
  }

  assert {
    condition     = toset(keys(output.ingress_rule_ids)) == toset(["0.0.0.0/0", "::/0"]) && output.ingress_rule_ids["::/0"] == aws_vpc_security_group_ingress_rule.ipv6["::/0"].id
    error_message = "ingress_rule_ids maps each CIDR to its rule's ID."
  }
}

run "no_webhook_rules_by_default" {
  command = plan

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.webhook_ipv4) == 0 && length(aws_vpc_security_group_ingress_rule.webhook_ipv6) == 0
    error_message = "webhook_port defaults to null: no port but the peer port may be opened."
  }
}

run "webhook_port_opens_one_rule_per_cidr" {
  command = plan

  variables {
    webhook_port       = 443
    allowed_ipv4_cidrs = ["203.0.113.0/24", "198.51.100.0/24"]
    allowed_ipv6_cidrs = ["2001:db8::/32"]
  }

  assert {
    condition     = toset(keys(aws_vpc_security_group_ingress_rule.webhook_ipv4)) == toset(["203.0.113.0/24", "198.51.100.0/24"]) && keys(aws_vpc_security_group_ingress_rule.webhook_ipv6) == ["2001:db8::/32"]
    error_message = "webhook_port is opened to each CIDR of the peer port, once."
  }

  assert {
    condition = alltrue([
      for rule in concat(values(aws_vpc_security_group_ingress_rule.webhook_ipv4), values(aws_vpc_security_group_ingress_rule.webhook_ipv6)) :
      rule.ip_protocol == "tcp" && rule.from_port == 443 && rule.to_port == 443
    ])
    error_message = "Every webhook rule must open exactly TCP 443."
  }

  assert {
    condition     = alltrue([for rule in values(aws_vpc_security_group_ingress_rule.ipv4) : rule.from_port == 9100 && rule.to_port == 9100])
    error_message = "The peer port's rules stay on 9100."
  }
}
