# The files of the stand-in OS's VMs that every disk image shares: Debian's
# cloud kernel (`kernel`), an initrd with the virtio drivers (`initrd`) and
# the root file system's tree (`root/`). See build-os.sh; what runs in
# the guest is in guest/.
{ pkgs }:
derivation {
  name = "stand-in-os-vm-files";
  system = pkgs.system;
  builder = "/bin/bash";
  args = [ ./build-os.sh ];
  scripts = ./guest;
  __noChroot = true;
}
