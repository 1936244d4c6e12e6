output "firewall_ids" {
  description = "IDs of the firewall rules (projects/<project>/global/firewalls/<name>), keyed by address family (ipv4, ipv6)."
  value       = { for family, rule in google_compute_firewall.this : family => rule.id }
}

output "firewall_names" {
  description = "Names of the firewall rules, keyed by address family."
  value       = { for family, rule in google_compute_firewall.this : family => rule.name }
}

output "firewall_self_links" {
  description = "Self links of the firewall rules, keyed by address family."
  value       = { for family, rule in google_compute_firewall.this : family => rule.self_link }
}

output "target_tags" {
  description = "Network tags the node's instance must carry for the rules to apply."
  value       = var.target_tags
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
