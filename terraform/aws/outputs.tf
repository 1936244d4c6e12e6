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

output "webhook_rule_ids" {
  description = "IDs of the rules opening webhook_port, keyed by source CIDR; {} while it is null."
  value       = module.p2pcache_node.webhook_rule_ids
}

output "bootstrap_multiaddr" {
  description = "The first node's multiaddr (the single-node form of bootstrap_multiaddrs); null until a node's address and peer ID are set."
  value       = module.p2pcache_node.bootstrap_multiaddr
}

output "bootstrap_multiaddrs" {
  description = "Store as the MCP_P2P_BOOTSTRAP_PEERS secret: every node's multiaddr, comma-separated; null until a node's address and peer ID are set."
  value       = module.p2pcache_node.bootstrap_multiaddrs
}

output "bootstrap_multiaddr_list" {
  description = "The multiaddrs of bootstrap_multiaddrs as a list; [] until a node's address and peer ID are set."
  value       = module.p2pcache_node.bootstrap_multiaddr_list
}
