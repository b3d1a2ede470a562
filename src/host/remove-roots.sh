# Removes the temporary GC roots that realise.sh made in directory $1 (and
# the directory), once their outputs have been copied where they go.
case $1 in
  */nixops-build.*) rm -rf -- "$1" ;;
  *) echo "refusing to remove $1: not a directory of realise.sh" >&2; exit 1 ;;
esac
