"""The ML cluster itself, independent of Flink and of any framework: config checks, the
AM and its state machine (rules), the node runner (AM client, entry process supervision,
watch loop), the node context, the control-plane protocol, rendezvous and registries."""
