locals {
  # An empty string is how a CI variable or an unset secret usually arrives: treat it as unknown.
  ip      = var.ip == "" ? null : var.ip
  peer_id = var.peer_id == "" ? null : var.peer_id

  protocol = local.ip == null ? null : (strcontains(local.ip, ":") ? "ip6" : "ip4")

  # cidrhost of a single-address prefix yields the canonical text form (lowercase, compressed
  # IPv6), the same one the node itself prints.
  canonical_ip = local.ip == null ? null : cidrhost("${local.ip}/${local.protocol == "ip6" ? 128 : 32}", 0)

  multiaddr = (
    local.ip == null || local.peer_id == null
    ? null
    : "/${local.protocol}/${local.canonical_ip}/tcp/${var.port}/p2p/${local.peer_id}"
  )
}
