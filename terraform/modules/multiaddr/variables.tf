# Callers (the aws, gcp and azure modules) validate these as their own inputs, where an error
# points at the variable the user set; here they are only typed.

variable "ip" {
  description = "Public IPv4 or IPv6 address of the node, or null (or \"\") while it is not known."
  type        = string
  default     = null
}

variable "port" {
  description = "TCP port the node listens on for libp2p peers."
  type        = number
  nullable    = false
}

variable "peer_id" {
  description = "libp2p peer ID of the node (base58btc, such as 12D3KooW...), or null (or \"\") while it is not known."
  type        = string
  default     = null
}
