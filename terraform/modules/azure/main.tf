# Rules live in azurerm_network_security_rule resources only: an NSG with inline security_rule
# blocks would treat them as its whole rule set and delete these on every apply.
resource "azurerm_network_security_group" "this" {
  name                = var.name
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

locals {
  # The peer port, and GitHub's webhook deliveries when webhook_port is set.
  ports = compact([tostring(var.port), var.webhook_port == null ? "" : tostring(var.webhook_port)])

  # An NSG rule cannot mix IPv4 and IPv6 prefixes: one rule per address family, each with its
  # own (unique) priority.
  rules = {
    for family, rule in {
      ipv4 = { prefixes = var.allowed_ipv4_cidrs, priority = var.priority }
      ipv6 = { prefixes = var.allowed_ipv6_cidrs, priority = var.priority + 1 }
    } : family => rule if length(rule.prefixes) > 0
  }
}

resource "azurerm_network_security_rule" "this" {
  for_each = local.rules

  name                        = "${var.name}-libp2p-${each.key}"
  description                 = "p2pcache node: libp2p peers on TCP ${var.port}${var.webhook_port == null ? "" : ", webhook deliveries on TCP ${var.webhook_port}"} (${each.key})"
  resource_group_name         = var.resource_group_name
  network_security_group_name = azurerm_network_security_group.this.name
  priority                    = each.value.priority
  direction                   = "Inbound"
  access                      = "Allow"
  protocol                    = "Tcp"
  source_port_range           = "*"
  source_address_prefixes     = each.value.prefixes
  destination_port_ranges     = local.ports
  destination_address_prefix  = "*"
}

module "multiaddr" {
  source = "../multiaddr"

  port  = var.port
  nodes = concat([{ public_ip = var.node_public_ip, peer_id = var.peer_id }], var.nodes)
}
