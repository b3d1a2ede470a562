# Stand-in for nixpkgs' profile of QEMU/KVM guests (virtio drivers in the
# initrd): it marks the system, for tests to see it was imported.
{ ... }:
{
  environment.etc."nixos-stub/profiles/qemu-guest".text = "imported\n";
}
