"""The engines that run a job: messages, contexts, server and client engines, the simulator."""
