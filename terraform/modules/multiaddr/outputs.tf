output "value" {
  description = "/ip4/<ip>/tcp/<port>/p2p/<peer_id> (or /ip6/...), or null until both the address and the peer ID are known."
  value       = local.multiaddr
}
