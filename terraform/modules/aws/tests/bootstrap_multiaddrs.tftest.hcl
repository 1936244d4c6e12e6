# bootstrap_multiaddrs: several server nodes sharing the rules, as one MCP_P2P_BOOTSTRAP_PEERS value.
# A mock provider stands in for AWS: these runs only plan, and need no credentials or network.

mock_provider "aws" {}

variables {
  vpc_id = "vpc-0123456789abcdef0"
}

run "two_nodes_in_input_order" {
  command = plan

  variables {
    nodes = [
      { public_ip = "203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
      { public_ip = "2001:DB8:0:0::20", peer_id = "16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER" },
    ]
  }

  assert {
    condition     = output.bootstrap_multiaddrs == "/ip4/203.0.113.10/tcp/9100/p2p/12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d,/ip6/2001:db8::20/tcp/9100/p2p/16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER"
    error_message = "Two nodes must give both multiaddrs, comma-separated, in input order: ${jsonencode(output.bootstrap_multiaddrs)}"
  }

  assert {
    condition = output.bootstrap_multiaddr_list == [
      "/ip4/203.0.113.10/tcp/9100/p2p/12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d",
      "/ip6/2001:db8::20/tcp/9100/p2p/16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER",
    ]
    error_message = "The list output must hold the same multiaddrs: ${jsonencode(output.bootstrap_multiaddr_list)}"
  }

  assert {
    condition     = output.bootstrap_multiaddr == "/ip4/203.0.113.10/tcp/9100/p2p/12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
    error_message = "bootstrap_multiaddr must be the first node's: ${jsonencode(output.bootstrap_multiaddr)}"
  }
}

run "single_node_variables_come_first" {
  command = plan

  variables {
    port           = 4001
    node_public_ip = "198.51.100.7"
    peer_id        = "QmXW96nAQevVTCvVyswEKZTDWD1yz9dsv5HwFSBLDwz574"
    nodes = [
      { public_ip = "203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
    ]
  }

  assert {
    condition     = output.bootstrap_multiaddrs == "/ip4/198.51.100.7/tcp/4001/p2p/QmXW96nAQevVTCvVyswEKZTDWD1yz9dsv5HwFSBLDwz574,/ip4/203.0.113.10/tcp/4001/p2p/12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
    error_message = "node_public_ip and peer_id are one more node, listed first: ${jsonencode(output.bootstrap_multiaddrs)}"
  }

  assert {
    condition     = output.bootstrap_multiaddr == "/ip4/198.51.100.7/tcp/4001/p2p/QmXW96nAQevVTCvVyswEKZTDWD1yz9dsv5HwFSBLDwz574"
    error_message = "bootstrap_multiaddr must keep the single node's value: ${jsonencode(output.bootstrap_multiaddr)}"
  }
}

run "single_node_alone_as_before" {
  command = plan

  variables {
    node_public_ip = "203.0.113.10"
    peer_id        = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
  }

  assert {
    condition     = output.bootstrap_multiaddrs == output.bootstrap_multiaddr && output.bootstrap_multiaddr_list == [output.bootstrap_multiaddr]
    error_message = "With one node, bootstrap_multiaddrs is bootstrap_multiaddr: ${jsonencode(output.bootstrap_multiaddrs)}"
  }
}

run "unknown_nodes_are_left_out" {
  command = plan

  variables {
    node_public_ip = "198.51.100.7"
    nodes = [
      { public_ip = "", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
      { public_ip = "2001:db8::20", peer_id = "16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER" },
      { public_ip = "203.0.113.30", peer_id = null },
    ]
  }

  assert {
    condition     = output.bootstrap_multiaddrs == "/ip6/2001:db8::20/tcp/9100/p2p/16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER"
    error_message = "Only nodes with both an address and a peer ID count: ${jsonencode(output.bootstrap_multiaddrs)}"
  }

  assert {
    condition     = output.bootstrap_multiaddr == "/ip6/2001:db8::20/tcp/9100/p2p/16Uiu2HAmEdQofKh9W43vDJphoSGB3DtYgkA3ySJB7TRtLyxkVPER"
    error_message = "bootstrap_multiaddr is the first known node's: ${jsonencode(output.bootstrap_multiaddr)}"
  }
}

run "null_while_no_node_is_known" {
  command = plan

  variables {
    nodes = []
  }

  assert {
    condition     = output.bootstrap_multiaddrs == null && output.bootstrap_multiaddr == null && output.bootstrap_multiaddr_list == []
    error_message = "With no node known, bootstrap_multiaddrs and bootstrap_multiaddr are null and the list is empty."
  }
}

run "null_while_every_node_is_incomplete" {
  command = plan

  variables {
    peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
    nodes = [
      { public_ip = "203.0.113.10", peer_id = "" },
      { public_ip = null, peer_id = null },
    ]
  }

  assert {
    condition     = output.bootstrap_multiaddrs == null && output.bootstrap_multiaddr == null && output.bootstrap_multiaddr_list == []
    error_message = "Nodes missing an address or a peer ID leave the outputs null: ${jsonencode(output.bootstrap_multiaddrs)}"
  }
}

run "ipv4_mapped_address_is_ip4" {
  # cidrhost writes ::ffff:203.0.113.10 as 203.0.113.10; /ip6/203.0.113.10 would not parse.
  command = plan

  variables {
    nodes = [
      { public_ip = "::ffff:203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
    ]
  }

  assert {
    condition     = output.bootstrap_multiaddrs == "/ip4/203.0.113.10/tcp/9100/p2p/12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d"
    error_message = "An IPv4-mapped address must come out as /ip4: ${jsonencode(output.bootstrap_multiaddrs)}"
  }
}

run "one_node_at_two_addresses" {
  # A dual-stack node: the same peer ID over IPv4 and IPv6 is not a duplicate.
  command = plan

  variables {
    nodes = [
      { public_ip = "203.0.113.10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
      { public_ip = "2001:db8::10", peer_id = "12D3KooWQQC5d8bDv8hLCN7cFJ6k813gbTpdBYQznbD7gXpZPg4d" },
    ]
  }

  assert {
    condition     = length(output.bootstrap_multiaddr_list) == 2
    error_message = "Both addresses of one node must be listed: ${jsonencode(output.bootstrap_multiaddr_list)}"
  }
}
