"""How engines and processes talk: the wire codec and the transports."""
