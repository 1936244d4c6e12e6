output "security_group_id" {
  description = "Attach this security group to the node's instance."
  value       = module.p2pcache_node.security_group_id
}

output "security_group_arn" {
  description = "ARN of the security group."
  value       = module.p2pcache_node.security_group_arn
}

output "ingress_rule_ids" {
  description = "IDs of the rules opening the port, keyed by source CIDR."
  value       = module.p2pcache_node.ingress_rule_ids
}

output "bootstrap_multiaddr" {
  description = "Store as the MCP_P2P_BOOTSTRAP_PEERS secret; null until node_public_ip and peer_id are set."
  value       = module.p2pcache_node.bootstrap_multiaddr
}
