# Shared with the aws and azure modules: tests/test_terraform.py holds the blocks from `port` to
# `nodes` identical in all three.

variable "port" {
  description = "TCP port the p2pcache node listens on for libp2p peers."
  type        = number
  default     = 9100
  nullable    = false

  validation {
    condition     = var.port >= 1 && var.port <= 65535 && floor(var.port) == var.port
    error_message = "port must be a whole number from 1 to 65535 (got ${var.port})."
  }
}

variable "webhook_port" {
  description = "TCP port where GitHub's webhook deliveries reach the node's host: the node's own --webhook port, or that of the TLS terminator in front of it (443, say). Opened to the same CIDRs as port; null (the default) opens nothing."
  type        = number
  default     = null

  validation {
    condition     = var.webhook_port == null || try(var.webhook_port >= 1 && var.webhook_port <= 65535 && floor(var.webhook_port) == var.webhook_port && var.webhook_port != var.port, false)
    error_message = "webhook_port must be null (no webhooks) or a whole number from 1 to 65535 other than port (got ${jsonencode(var.webhook_port)})."
  }
}

variable "allowed_ipv4_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the node's port. The default opens it to everyone, because GitHub-hosted runners connect from addresses all over the cloud."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  nullable    = false

  validation {
    condition     = alltrue([for cidr in var.allowed_ipv4_cidrs : try(!strcontains(cidr, ":") && cidrsubnet(cidr, 0, 0) == cidr, false)])
    error_message = "allowed_ipv4_cidrs must hold IPv4 CIDR blocks in canonical form, such as \"203.0.113.0/24\" (no host bits set, prefix length 0 to 32); got ${jsonencode(var.allowed_ipv4_cidrs)}."
  }
}

variable "allowed_ipv6_cidrs" {
  description = "IPv6 CIDR blocks allowed to reach the node's port. Set to [] to open the port over IPv4 only."
  type        = list(string)
  default     = ["::/0"]
  nullable    = false

  validation {
    condition     = alltrue([for cidr in var.allowed_ipv6_cidrs : try(strcontains(cidr, ":") && cidrsubnet(cidr, 0, 0) == cidr, false)])
    error_message = "allowed_ipv6_cidrs must hold IPv6 CIDR blocks in canonical form, such as \"2001:db8::/32\" (lowercase, no host bits set, prefix length 0 to 128); got ${jsonencode(var.allowed_ipv6_cidrs)}."
  }

  validation {
    condition     = length(var.allowed_ipv4_cidrs) + length(var.allowed_ipv6_cidrs) > 0
    error_message = "allowed_ipv4_cidrs and allowed_ipv6_cidrs are both empty: the rules would let no peer in."
  }
}

variable "node_public_ip" {
  description = "Public IPv4 or IPv6 address where peers reach the node; null (or \"\") until it is known. Only used to build the bootstrap multiaddrs, as their first node."
  type        = string
  default     = null

  validation {
    condition     = var.node_public_ip == null || var.node_public_ip == "" || can(cidrhost("${var.node_public_ip}/${strcontains(var.node_public_ip, ":") ? 128 : 32}", 0))
    error_message = "node_public_ip must be a single IPv4 or IPv6 address without a prefix length, such as \"203.0.113.10\" or \"2001:db8::10\"."
  }
}

variable "peer_id" {
  description = "libp2p peer ID the node prints at start (base58btc: 12D3KooW... for Ed25519 keys); null (or \"\") until it is known. Only used to build the bootstrap multiaddrs, as their first node."
  type        = string
  default     = null

  validation {
    condition     = var.peer_id == null || var.peer_id == "" || can(regex("^(12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|16Uiu2HA[1-9A-HJ-NP-Za-km-z]{45}|Qm[1-9A-HJ-NP-Za-km-z]{44})$", var.peer_id))
    error_message = "peer_id must be a base58btc libp2p peer ID: 12D3KooW... (52 characters, Ed25519), 16Uiu2HA... (53, secp256k1) or Qm... (46, RSA/ECDSA)."
  }
}

variable "nodes" {
  description = "The server nodes that share these rules, in order: each the public IPv4 or IPv6 address where peers reach it and the libp2p peer ID it prints at start. A node whose public_ip or peer_id is null (or \"\") is left out until both are known; node_public_ip and peer_id, when set, are one more node, listed first. Only used to build the bootstrap multiaddrs."
  type = list(object({
    public_ip = string
    peer_id   = string
  }))
  default  = []
  nullable = false

  validation {
    condition = alltrue([
      for node in var.nodes :
      try(node.public_ip == null || node.public_ip == "" || can(cidrhost("${node.public_ip}/${strcontains(node.public_ip, ":") ? 128 : 32}", 0)), false)
    ])
    error_message = "nodes: each public_ip must be a single IPv4 or IPv6 address without a prefix length, such as \"203.0.113.10\" or \"2001:db8::10\"; got ${jsonencode([
      for node in var.nodes : try(node.public_ip, null)
      if !try(node.public_ip == null || node.public_ip == "" || can(cidrhost("${node.public_ip}/${strcontains(node.public_ip, ":") ? 128 : 32}", 0)), false)
    ])}."
  }

  validation {
    condition = alltrue([
      for node in var.nodes :
      try(node.peer_id == null || node.peer_id == "" || can(regex("^(12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|16Uiu2HA[1-9A-HJ-NP-Za-km-z]{45}|Qm[1-9A-HJ-NP-Za-km-z]{44})$", node.peer_id)), false)
    ])
    error_message = "nodes: each peer_id must be a base58btc libp2p peer ID: 12D3KooW... (52 characters, Ed25519), 16Uiu2HA... (53, secp256k1) or Qm... (46, RSA/ECDSA); got ${jsonencode([
      for node in var.nodes : try(node.peer_id, null)
      if !try(node.peer_id == null || node.peer_id == "" || can(regex("^(12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|16Uiu2HA[1-9A-HJ-NP-Za-km-z]{45}|Qm[1-9A-HJ-NP-Za-km-z]{44})$", node.peer_id)), false)
    ])}."
  }

  # One address and port reach one node, so an address listed twice is a mistake; compared in
  # canonical form (2001:DB8::10 is 2001:db8::10). One node at two addresses (IPv4 and IPv6) is fine.
  validation {
    condition = alltrue([
      for address, listed in {
        for ip in concat([var.node_public_ip], [for node in var.nodes : try(node.public_ip, null)]) :
        try(cidrhost("${ip}/${strcontains(ip, ":") ? 128 : 32}", 0), ip) => ip... if ip != null && ip != ""
      } : length(listed) == 1
    ])
    error_message = "nodes: each node needs an address of its own (node_public_ip, when set, counts as one more node); listed more than once: ${jsonencode([
      for address, listed in {
        for ip in concat([var.node_public_ip], [for node in var.nodes : try(node.public_ip, null)]) :
        try(cidrhost("${ip}/${strcontains(ip, ":") ? 128 : 32}", 0), ip) => ip... if ip != null && ip != ""
      } : address if length(listed) > 1
    ])}."
  }
}

variable "name" {
  description = "Base name of the firewall rules; they are called <name>-ipv4 and <name>-ipv6. (Firewall rules take no labels, so this module has no labels input.)"
  type        = string
  default     = "p2pcache"
  nullable    = false

  validation {
    # 63 characters for a GCE resource name, less the 5 of the "-ipv4" suffix.
    condition     = can(regex("^[a-z]([-a-z0-9]{0,56}[a-z0-9])?$", var.name))
    error_message = "name must be 1 to 58 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "project" {
  description = "ID of the project holding the network; null uses the provider's project."
  type        = string
  default     = null

  validation {
    condition     = var.project == null || can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.project))
    error_message = "project must be a project ID: 6 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "network" {
  description = "Name or self link of the VPC network the node's instance is in."
  type        = string
  default     = "default"
  nullable    = false

  validation {
    condition     = length(trimspace(var.network)) > 0
    error_message = "network must name a VPC network, such as \"default\"."
  }
}

variable "target_tags" {
  description = "Network tags that select the node's instances; the rules apply to instances carrying any of them. Add one to the node's instance (tags = [\"p2pcache\"])."
  type        = list(string)
  default     = ["p2pcache"]
  nullable    = false

  validation {
    # An empty list would make the rules apply to every instance in the network.
    condition     = length(var.target_tags) > 0 && alltrue([for tag in var.target_tags : can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", tag))])
    error_message = "target_tags must hold at least one network tag of 1 to 63 lowercase letters, digits or hyphens, starting with a letter; an empty list would open the port on every instance in the network."
  }
}

variable "priority" {
  description = "Priority of the firewall rules, 0 (first) to 65535."
  type        = number
  default     = 1000
  nullable    = false

  validation {
    condition     = var.priority >= 0 && var.priority <= 65535 && floor(var.priority) == var.priority
    error_message = "priority must be a whole number from 0 to 65535."
  }
}
