provider "aws" {
  region = var.region
}

data "aws_vpc" "default" {
  count   = var.vpc_id == null ? 1 : 0
  default = true
}

module "p2pcache_node" {
  source = "../modules/aws"

  name               = var.name
  vpc_id             = coalesce(var.vpc_id, one(data.aws_vpc.default[*].id))
  port               = var.port
  webhook_port       = var.webhook_port
  allowed_ipv4_cidrs = var.allowed_ipv4_cidrs
  allowed_ipv6_cidrs = var.allowed_ipv6_cidrs
  node_public_ip     = var.node_public_ip
  peer_id            = var.peer_id
  nodes              = var.nodes
  tags               = var.tags
}
