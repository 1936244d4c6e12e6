# bootstrap_multiaddr: how the node's address and peer ID become the MCP_P2P_BOOTSTRAP_PEERS value.
# A mock provider stands in for AWS: these runs only plan, and need no credentials or network.

mock_provider "aws" {}

variables {
  vpc_id = "vpc-0123456789abcdef0"
}

run "ipv4_address" {
  command = plan

  variables {
    node_public_ip = "203.0.113.10"
    peer_id        = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
  }

  assert {
    condition     = output.bootstrap_multiaddr == "/ip4/203.0.113.10/tcp/9100/p2p/12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
    error_message = "IPv4 multiaddr is wrong: ${jsonencode(output.bootstrap_multiaddr)}"
  }
}

run "ipv6_address_is_canonicalised" {
  command = plan

  variables {
    node_public_ip = "2001:DB8:0:0::10"
    peer_id        = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
  }

  assert {
    condition     = output.bootstrap_multiaddr == "/ip6/2001:db8::10/tcp/9100/p2p/12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
    error_message = "IPv6 multiaddr is wrong: ${jsonencode(output.bootstrap_multiaddr)}"
  }
}

run "custom_port_and_other_key_types" {
  command = plan

  variables {
    port           = 4001
    node_public_ip = "198.51.100.7"
    peer_id        = "16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER"
  }

  assert {
    condition     = output.bootstrap_multiaddr == "/ip4/198.51.100.7/tcp/4001/p2p/16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER"
    error_message = "secp256k1 multiaddr on port 4001 is wrong: ${jsonencode(output.bootstrap_multiaddr)}"
  }
}

run "rsa_peer_id" {
  command = plan

  variables {
    node_public_ip = "198.51.100.7"
    peer_id        = "QmXW96nAQevVTCvVyswEKZTDWD1yz9dsv5HwFSBLDwz574"
  }

  assert {
    condition     = output.bootstrap_multiaddr == "/ip4/198.51.100.7/tcp/9100/p2p/QmXW96nAQevVTCvVyswEKZTDWD1yz9dsv5HwFSBLDwz574"
    error_message = "RSA multiaddr is wrong: ${jsonencode(output.bootstrap_multiaddr)}"
  }
}

run "null_without_address_or_peer_id" {
  command = plan

  assert {
    condition     = output.bootstrap_multiaddr == null
    error_message = "bootstrap_multiaddr must be null when neither node_public_ip nor peer_id is set."
  }
}

run "null_with_address_only" {
  command = plan

  variables {
    node_public_ip = "203.0.113.10"
  }

  assert {
    condition     = output.bootstrap_multiaddr == null
    error_message = "bootstrap_multiaddr must be null until peer_id is known."
  }
}

run "null_with_peer_id_only" {
  command = plan

  variables {
    peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
  }

  assert {
    condition     = output.bootstrap_multiaddr == null
    error_message = "bootstrap_multiaddr must be null until node_public_ip is known."
  }
}

run "empty_strings_count_as_unknown" {
  command = plan

  variables {
    node_public_ip = ""
    peer_id        = ""
  }

  assert {
    condition     = output.bootstrap_multiaddr == null
    error_message = "Empty strings (an unset CI secret) must leave bootstrap_multiaddr null."
  }
}
