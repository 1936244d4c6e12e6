# Bad inputs stop at plan, on the variable that holds them.

mock_provider "aws" {}

variables {
  vpc_id = "vpc-0123456789abcdef0"
}

run "port_above_65535" {
  command = plan
  variables { port = 70000 }
  expect_failures = [var.port]
}

run "port_zero" {
  command = plan
  variables { port = 0 }
  expect_failures = [var.port]
}

run "port_not_whole" {
  command = plan
  variables { port = 9100.5 }
  expect_failures = [var.port]
}

run "ipv4_prefix_too_long" {
  command = plan
  variables { allowed_ipv4_cidrs = ["10.0.0.0/33"] }
  expect_failures = [var.allowed_ipv4_cidrs]
}

run "ipv4_host_bits_set" {
  command = plan
  variables { allowed_ipv4_cidrs = ["0.0.0.0/0", "10.0.0.1/8"] }
  expect_failures = [var.allowed_ipv4_cidrs]
}

run "ipv4_list_with_ipv6_cidr" {
  command = plan
  variables { allowed_ipv4_cidrs = ["::/0"] }
  expect_failures = [var.allowed_ipv4_cidrs]
}

run "ipv4_bare_address" {
  command = plan
  variables { allowed_ipv4_cidrs = ["203.0.113.7"] }
  expect_failures = [var.allowed_ipv4_cidrs]
}

run "ipv6_list_with_ipv4_cidr" {
  command = plan
  variables { allowed_ipv6_cidrs = ["10.0.0.0/8"] }
  expect_failures = [var.allowed_ipv6_cidrs]
}

run "ipv6_prefix_too_long" {
  command = plan
  variables { allowed_ipv6_cidrs = ["2001:db8::/129"] }
  expect_failures = [var.allowed_ipv6_cidrs]
}

run "no_cidr_at_all" {
  command = plan
  variables {
    allowed_ipv4_cidrs = []
    allowed_ipv6_cidrs = []
  }
  expect_failures = [var.allowed_ipv6_cidrs]
}

run "node_ip_with_prefix" {
  command = plan
  variables { node_public_ip = "203.0.113.10/32" }
  expect_failures = [var.node_public_ip]
}

run "node_ip_not_an_address" {
  command = plan
  variables { node_public_ip = "node.example.com" }
  expect_failures = [var.node_public_ip]
}

run "peer_id_truncated" {
  command = plan
  variables { peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4" }
  expect_failures = [var.peer_id]
}

run "peer_id_not_base58" {
  # 0, O, I and l are not in the base58btc alphabet.
  command = plan
  variables { peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg40" }
  expect_failures = [var.peer_id]
}

run "vpc_id_malformed" {
  command = plan
  variables { vpc_id = "default" }
  expect_failures = [var.vpc_id]
}

run "name_reserved_prefix" {
  command = plan
  variables { name = "sg-p2pcache" }
  expect_failures = [var.name]
}

run "nodes_ip_with_prefix" {
  command = plan
  variables {
    nodes = [
      { public_ip = "203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
      { public_ip = "203.0.113.20/32", peer_id = "16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER" },
    ]
  }
  expect_failures = [var.nodes]
}

run "nodes_ip_a_hostname" {
  command = plan
  variables {
    nodes = [{ public_ip = "node.example.com", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" }]
  }
  expect_failures = [var.nodes]
}

run "nodes_peer_id_truncated" {
  command = plan
  variables {
    nodes = [{ public_ip = "203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4" }]
  }
  expect_failures = [var.nodes]
}

run "nodes_peer_id_a_multiaddr" {
  # A whole multiaddr pasted where the peer ID goes.
  command = plan
  variables {
    nodes = [{ public_ip = "203.0.113.10", peer_id = "/ip4/203.0.113.10/tcp/9100/p2p/12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" }]
  }
  expect_failures = [var.nodes]
}

run "nodes_null_entry" {
  command = plan
  variables {
    nodes = [null]
  }
  expect_failures = [var.nodes]
}

run "nodes_same_address_twice" {
  command = plan
  variables {
    nodes = [
      { public_ip = "203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
      { public_ip = "203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
    ]
  }
  expect_failures = [var.nodes]
}

run "nodes_same_ipv6_address_spelled_twice" {
  command = plan
  variables {
    nodes = [
      { public_ip = "2001:db8::10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
      { public_ip = "2001:DB8:0::10", peer_id = "16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER" },
    ]
  }
  expect_failures = [var.nodes]
}

run "nodes_repeat_node_public_ip" {
  command = plan
  variables {
    node_public_ip = "203.0.113.10"
    peer_id        = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
    nodes          = [{ public_ip = "203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" }]
  }
  expect_failures = [var.nodes]
}

run "webhook_port_above_65535" {
  command = plan
  variables { webhook_port = 70000 }
  expect_failures = [var.webhook_port]
}

run "webhook_port_not_whole" {
  command = plan
  variables { webhook_port = 443.5 }
  expect_failures = [var.webhook_port]
}

run "webhook_port_is_the_peer_port" {
  command = plan
  variables { webhook_port = 9100 }
  expect_failures = [var.webhook_port]
}
