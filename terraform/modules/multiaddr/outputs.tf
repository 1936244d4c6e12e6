output "values" {
  description = "One /ip4/<ip>/tcp/<port>/p2p/<peer_id> (or /ip6/...) per known node, in input order; [] while none is known."
  value       = local.multiaddrs
}

output "value" {
  description = "The first known node's multiaddr, or null while none is known."
  value       = try(local.multiaddrs[0], null)
}

output "joined" {
  description = "Every known node's multiaddr, comma-separated in input order, or null while none is known."
  value       = length(local.multiaddrs) == 0 ? null : join(",", local.multiaddrs)
}
