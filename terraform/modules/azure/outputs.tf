output "network_security_group_id" {
  description = "ID of the network security group: associate it with the node's network interface or subnet."
  value       = azurerm_network_security_group.this.id
}

output "network_security_group_name" {
  description = "Name of the network security group."
  value       = azurerm_network_security_group.this.name
}

output "security_rule_ids" {
  description = "IDs of the rules opening the port, keyed by address family (ipv4, ipv6)."
  value       = { for family, rule in azurerm_network_security_rule.this : family => rule.id }
}

output "bootstrap_multiaddr" {
  description = "Value for the MCP_P2P_BOOTSTRAP_PEERS secret: /ip4/<ip>/tcp/<port>/p2p/<peer_id> (or /ip6/...), null until node_public_ip and peer_id are both set."
  value       = module.multiaddr.value
}
