# Decides for guard $1 (after activation-lib.sh): makes the decision $2
# unless one was made already, then prints the one that stands.
ln -s "$2" "$base/$1/decision" 2>/dev/null && wake "$1" wake
readlink "$base/$1/decision"
