# Callers (the aws, gcp and azure modules) validate these as their own inputs, where an error
# points at the variable the user set; here they are only typed.

variable "port" {
  description = "TCP port the nodes listen on for libp2p peers."
  type        = number
  nullable    = false
}

variable "nodes" {
  description = "The server nodes, in order: each a public IPv4 or IPv6 address and a libp2p peer ID (base58btc, such as 12D3KooW...); a node whose address or peer ID is null (or \"\") is left out until both are known."
  type = list(object({
    public_ip = string
    peer_id   = string
  }))
  default  = []
  nullable = false
}
