// The guest control channel under qemu: a virtio-serial port with this name, exposed
// on the host as a unix socket (args.ts), where guest/agent/aleph-agent answers.

/** The port's name inside the guest (guest/agent/aleph-agent.c looks it up). */
export const CONTROL_PORT_NAME = 'org.aleph.ctl';
