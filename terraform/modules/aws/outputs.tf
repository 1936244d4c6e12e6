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

output "bootstrap_multiaddr" {
  description = "Value for the MCP_P2P_BOOTSTRAP_PEERS secret: /ip4/<ip>/tcp/<port>/p2p/<peer_id> (or /ip6/...), null until node_public_ip and peer_id are both set."
  value       = module.multiaddr.value
}
