output "network_security_group_id" {
  description = "Associate this network security group with the node's network interface or subnet."
  value       = module.p2pcache_node.network_security_group_id
}

output "security_rule_ids" {
  description = "IDs of the rules opening the port, keyed by address family."
  value       = module.p2pcache_node.security_rule_ids
}

output "bootstrap_multiaddr" {
  description = "Store as the MCP_P2P_BOOTSTRAP_PEERS secret; null until node_public_ip and peer_id are set."
  value       = module.p2pcache_node.bootstrap_multiaddr
}
