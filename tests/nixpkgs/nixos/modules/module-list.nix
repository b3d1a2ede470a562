# The stub OS: a few real-looking NixOS options and a toplevel that can be
# built offline with /bin/busybox.
[
  ./misc/nixpkgs.nix
  ./misc/version.nix
  ./misc/assertions.nix
  ./misc/check-config.nix
  ./config/networking.nix
  ./config/users-groups.nix
  ./config/system-path.nix
  ./config/locale.nix
  ./system/etc/etc.nix
  ./system/boot/systemd.nix
  ./system/boot/kernel.nix
  ./system/boot/loader/grub/grub.nix
  ./system/activation/activation-script.nix
  ./system/activation/top-level.nix
  ./tasks/filesystems.nix
  ./tasks/network-interfaces.nix
  ./services/hardware/udev.nix
  ./services/networking/ssh/sshd.nix
  ./services/web-servers/nginx/default.nix
  ./services/misc/forgejo.nix
  ./stub/activation.nix
]
