output "firewall_ids" {
  description = "IDs of the firewall rules, keyed by address family."
  value       = module.p2pcache_node.firewall_ids
}

output "target_tags" {
  description = "Network tags the node's instance must carry for the rules to apply."
  value       = module.p2pcache_node.target_tags
}

output "bootstrap_multiaddr" {
  description = "Store as the MCP_P2P_BOOTSTRAP_PEERS secret; null until node_public_ip and peer_id are set."
  value       = module.p2pcache_node.bootstrap_multiaddr
}
