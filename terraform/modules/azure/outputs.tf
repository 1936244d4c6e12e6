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
  description = "The first known node's multiaddr, /ip4/<ip>/tcp/<port>/p2p/<peer_id> (or /ip6/...): node_public_ip and peer_id if both are set, else the first of nodes; null while no node is known. With one server node, the value for the MCP_P2P_BOOTSTRAP_PEERS secret."
  value       = module.multiaddr.value
}

output "bootstrap_multiaddrs" {
  description = "Value for the MCP_P2P_BOOTSTRAP_PEERS secret: every known node's multiaddr (node_public_ip and peer_id first, then nodes in order), comma-separated; null while no node is known."
  value       = module.multiaddr.joined
}

output "bootstrap_multiaddr_list" {
  description = "The multiaddrs of bootstrap_multiaddrs as a list; [] while no node is known."
  value       = module.multiaddr.values
}
