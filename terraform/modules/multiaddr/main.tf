locals {
  # A node is known once both its address and its peer ID are: null, and the empty string an
  # unset CI variable or secret arrives as, both mean "not yet" (length() of null fails).
  known = [for node in var.nodes : node if try(length(node.public_ip) > 0 && length(node.peer_id) > 0, false)]

  # cidrhost of a single-address prefix yields the canonical text form (lowercase, compressed
  # IPv6), the same one the node itself prints.
  canonical_ips = [
    for node in local.known : cidrhost("${node.public_ip}/${strcontains(node.public_ip, ":") ? 128 : 32}", 0)
  ]

  # The family is read from the canonical form, not the input: an IPv4-mapped IPv6 address
  # (::ffff:203.0.113.10) comes out of cidrhost as 203.0.113.10, which only /ip4 can carry.
  multiaddrs = [
    for i, node in local.known :
    "/${strcontains(local.canonical_ips[i], ":") ? "ip6" : "ip4"}/${local.canonical_ips[i]}/tcp/${var.port}/p2p/${node.peer_id}"
  ]
}
