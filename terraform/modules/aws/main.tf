resource "aws_security_group" "this" {
  name = var.name
  # Changing a security group's description replaces the group, so it does not mention the port.
  description = "p2pcache node: libp2p peers"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = var.name })
}

# One rule per CIDR, as separate resources: rules can then be added or removed one at a time,
# and other configurations may attach rules of their own to the group without a fight.
resource "aws_vpc_security_group_ingress_rule" "ipv4" {
  for_each = toset(var.allowed_ipv4_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "p2pcache libp2p peers"
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
  cidr_ipv4         = each.value

  tags = merge(var.tags, { Name = "${var.name}-libp2p-ipv4" })
}

resource "aws_vpc_security_group_ingress_rule" "ipv6" {
  for_each = toset(var.allowed_ipv6_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "p2pcache libp2p peers"
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
  cidr_ipv6         = each.value

  tags = merge(var.tags, { Name = "${var.name}-libp2p-ipv6" })
}

# GitHub's webhook deliveries (webhook_port), from the same CIDRs; none while it is null.
resource "aws_vpc_security_group_ingress_rule" "webhook_ipv4" {
  for_each = var.webhook_port == null ? toset([]) : toset(var.allowed_ipv4_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "p2pcache GitHub webhook deliveries"
  ip_protocol       = "tcp"
  from_port         = var.webhook_port
  to_port           = var.webhook_port
  cidr_ipv4         = each.value

  tags = merge(var.tags, { Name = "${var.name}-webhook-ipv4" })
}

resource "aws_vpc_security_group_ingress_rule" "webhook_ipv6" {
  for_each = var.webhook_port == null ? toset([]) : toset(var.allowed_ipv6_cidrs)

  security_group_id = aws_security_group.this.id
  description       = "p2pcache GitHub webhook deliveries"
  ip_protocol       = "tcp"
  from_port         = var.webhook_port
  to_port           = var.webhook_port
  cidr_ipv6         = each.value

  tags = merge(var.tags, { Name = "${var.name}-webhook-ipv6" })
}

resource "aws_vpc_security_group_egress_rule" "all_ipv4" {
  count = var.allow_all_egress ? 1 : 0

  security_group_id = aws_security_group.this.id
  description       = "p2pcache node: GitHub API and peers"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"

  tags = merge(var.tags, { Name = "${var.name}-egress-ipv4" })
}

resource "aws_vpc_security_group_egress_rule" "all_ipv6" {
  count = var.allow_all_egress ? 1 : 0

  security_group_id = aws_security_group.this.id
  description       = "p2pcache node: GitHub API and peers"
  ip_protocol       = "-1"
  cidr_ipv6         = "::/0"

  tags = merge(var.tags, { Name = "${var.name}-egress-ipv6" })
}

module "multiaddr" {
  source = "../multiaddr"

  port  = var.port
  nodes = concat([{ public_ip = var.node_public_ip, peer_id = var.peer_id }], var.nodes)
}
