# How guard $1 ended (after activation-lib.sh): its outcome on the first
# line (nothing while it runs), then its log once it has ended.
if [ -e "$base/$1/outcome" ]; then
  cat "$base/$1/outcome"
  cat "$base/$1/log" 2>/dev/null
fi
