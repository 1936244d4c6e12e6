locals {
  # The peer port, and GitHub's webhook deliveries when webhook_port is set.
  ports = compact([tostring(var.port), var.webhook_port == null ? "" : tostring(var.webhook_port)])

  # A GCP firewall rule cannot mix IPv4 and IPv6 source ranges: one rule per address family.
  source_ranges = {
    for family, ranges in { ipv4 = var.allowed_ipv4_cidrs, ipv6 = var.allowed_ipv6_cidrs } :
    family => ranges if length(ranges) > 0
  }
}

resource "google_compute_firewall" "this" {
  for_each = local.source_ranges

  name        = "${var.name}-${each.key}"
  project     = var.project
  network     = var.network
  description = "p2pcache node: libp2p peers on TCP ${var.port}${var.webhook_port == null ? "" : ", webhook deliveries on TCP ${var.webhook_port}"} (${each.key})"
  direction   = "INGRESS"
  priority    = var.priority

  source_ranges = each.value
  target_tags   = var.target_tags

  allow {
    protocol = "tcp"
    ports    = local.ports
  }
}

module "multiaddr" {
  source = "../multiaddr"

  port  = var.port
  nodes = concat([{ public_ip = var.node_public_ip, peer_id = var.peer_id }], var.nodes)
}
