provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}

module "p2pcache_node" {
  source = "../modules/azure"

  resource_group_name = var.resource_group_name
  location            = var.location
  name                = var.name
  priority            = var.priority
  port                = var.port
  webhook_port        = var.webhook_port
  allowed_ipv4_cidrs  = var.allowed_ipv4_cidrs
  allowed_ipv6_cidrs  = var.allowed_ipv6_cidrs
  node_public_ip      = var.node_public_ip
  peer_id             = var.peer_id
  nodes               = var.nodes
  tags                = var.tags
}
