# The module under ../modules/azure validates every value passed on; these are typed and described.

variable "subscription_id" {
  description = "Azure subscription ID; null takes it from ARM_SUBSCRIPTION_ID or the Azure CLI login."
  type        = string
  default     = null
}

variable "resource_group_name" {
  description = "Existing resource group to create the network security group in."
  type        = string
  nullable    = false
}

variable "location" {
  description = "Azure region of the node's network interface or subnet, such as \"westeurope\"."
  type        = string
  nullable    = false
}

variable "name" {
  description = "Name of the network security group."
  type        = string
  default     = "p2pcache"
  nullable    = false
}

variable "priority" {
  description = "Priority of the IPv4 rule (100-4095); the IPv6 rule takes the next number."
  type        = number
  default     = 1000
  nullable    = false
}

variable "port" {
  description = "TCP port the node listens on for libp2p peers."
  type        = number
  default     = 9100
  nullable    = false
}

variable "webhook_port" {
  description = "TCP port where GitHub's webhook deliveries reach the node's host (the node's --webhook port, or its TLS terminator's); null opens nothing."
  type        = number
  default     = null
}

variable "allowed_ipv4_cidrs" {
  description = "IPv4 CIDR blocks allowed to reach the port (GitHub-hosted runners come from anywhere)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  nullable    = false
}

variable "allowed_ipv6_cidrs" {
  description = "IPv6 CIDR blocks allowed to reach the port; [] for IPv4 only."
  type        = list(string)
  default     = ["::/0"]
  nullable    = false
}

variable "node_public_ip" {
  description = "Public IPv4 or IPv6 address of the node (its public IP resource); null until known."
  type        = string
  default     = null
}

variable "peer_id" {
  description = "libp2p peer ID the node printed at its first start; null until known."
  type        = string
  default     = null
}

variable "nodes" {
  description = "The server nodes sharing these rules, in order: each its public address and the peer ID it printed. node_public_ip and peer_id, if set, are one more node, listed first."
  type = list(object({
    public_ip = string
    peer_id   = string
  }))
  default  = []
  nullable = false
}

variable "tags" {
  description = "Tags for the network security group."
  type        = map(string)
  default     = {}
  nullable    = false
}
