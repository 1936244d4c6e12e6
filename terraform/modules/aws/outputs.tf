output "security_group_id" {
  description = "ID of the security group (sg-...): attach it to the node's instance or network interface."
  value       = aws_security_group.this.id
}

output "security_group_arn" {
  description = "ARN of the security group."
  value       = aws_security_group.this.arn
}

output "security_group_name" {
  description = "Name of the security group."
  value       = aws_security_group.this.name
}

output "ingress_rule_ids" {
  description = "IDs (sgr-...) of the rules opening the port, keyed by source CIDR."
  value = merge(
    { for cidr, rule in aws_vpc_security_group_ingress_rule.ipv4 : cidr => rule.id },
    { for cidr, rule in aws_vpc_security_group_ingress_rule.ipv6 : cidr => rule.id },
  )
}

output "webhook_rule_ids" {
  description = "IDs (sgr-...) of the rules opening webhook_port, keyed by source CIDR; {} while webhook_port is null."
  value = merge(
    { for cidr, rule in aws_vpc_security_group_ingress_rule.webhook_ipv4 : cidr => rule.id },
    { for cidr, rule in aws_vpc_security_group_ingress_rule.webhook_ipv6 : cidr => rule.id },
  )
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
