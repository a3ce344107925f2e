# fish completion for acct
# Generated from the command tree by `python -m acct.cli.gen`; do not edit.

function __acct_accounts
    command acct __complete accounts 2>/dev/null
end

# The command path typed so far ('' at the top, then e.g. 'exec'), or 'WRAPPED' once the words
# of a wrapped command (after `acct exec [options] --`) have started.
function __acct_path
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l path ''
    set -l skip 0
    for t in $tokens
        if test $skip = 1
            set skip 0
            continue
        end
        if test "$t" = --
            contains -- "$path" $__acct_wrappers; and echo WRAPPED; and return
            continue
        end
        if string match -q -- '-*' $t
            contains -- "$path $t" $__acct_valued; and set skip 1
            continue
        end
        set -l next (string trim -- "$path $t")
        if contains -- "$next" $__acct_paths
            set path $next
        else if contains -- "$path" $__acct_wrappers
            echo WRAPPED
            return
        end
    end
    echo $path
end

function __acct_at
    test (__acct_path) = "$argv[1]"
end

function __acct_wrapped # the wrapped command line, completed as if typed alone
    set -l tokens (commandline -opc) (commandline -ct)
    set -e tokens[1]
    set -l start 1
    for i in (seq (count $tokens))
        if test "$tokens[$i]" = --
            set start (math $i + 1)
            break
        end
        string match -q -- '-*' $tokens[$i]; or contains -- $tokens[$i] $__acct_paths; or begin
            set start $i
            break
        end
    end
    complete -C (string join -- ' ' (string escape -- $tokens[$start..-2]) $tokens[-1])
end

set -g __acct_paths 'capacity' 'completion' 'disable' 'doctor' 'enable' 'exec' 'import' 'list' 'login' 'metrics' 'pool' 'pool init' 'pool join' 'pool leave' 'pool reclaim' 'pool status' 'prompt' 'refresh' 'remove' 'rename' 'shell-init' 'stats' 'status' 'use' 'watch'
set -g __acct_valued 'exec -t' 'exec --target' 'exec -a' 'exec --account' 'exec --policy' 'exec --max-rotations' 'exec --metrics-port' 'import -n' 'import --name' 'import --from' 'login --timeout' 'pool reclaim --account' 'prompt -t' 'prompt --target' 'prompt -f' 'prompt --format' 'shell-init -t' 'shell-init --target' 'stats --since' 'stats --by' 'use -t' 'use --target'
set -g __acct_wrappers 'exec'

complete -c acct -f
complete -c acct -n "__acct_at WRAPPED" -x -a '(__acct_wrapped)'
complete -c acct -n '__acct_at \'\'' -a 'capacity' -d 'Say whether the pool has room for more work: green, yellow or red (exit 0, 10, 20)'
complete -c acct -n '__acct_at \'\'' -a 'completion' -d 'Print the completion script for bash, zsh or fish'
complete -c acct -n '__acct_at \'\'' -a 'disable' -d 'Keep an account but never pick it or poll its usage'
complete -c acct -n '__acct_at \'\'' -a 'doctor' -d 'Check the tools\' files, settings and environment; exit 1 while a problem remains'
complete -c acct -n '__acct_at \'\'' -a 'enable' -d 'Let acct pick a disabled account again'
complete -c acct -n '__acct_at \'\'' -a 'exec' -d 'Run a coding tool on the best account; when it stops on a usage limit, switch and resume'
complete -c acct -n '__acct_at \'\'' -a 'import' -d 'Take the Claude login a tool holds now into acct (the tool keeps using it)'
complete -c acct -n '__acct_at \'\'' -a 'list' -d 'List accounts with their state, quota usage and token fingerprint'
complete -c acct -n '__acct_at \'\'' -a 'login' -d 'Log in to a Claude account in the browser (OAuth) and store it'
complete -c acct -n '__acct_at \'\'' -a 'metrics' -d 'Print the pool\'s state in the Prometheus text exposition format (local data only)'
complete -c acct -n '__acct_at \'\'' -a 'pool' -d 'One pool of accounts for all your machines, in PostgreSQL (`ACCT_POOL`)'
complete -c acct -n '__acct_at \'\'' -a 'prompt' -d 'Print the account a tool\'s file holds and its utilization, for the shell prompt'
complete -c acct -n '__acct_at \'\'' -a 'refresh' -d 'Refresh an account\'s access token now (spends its refresh token)'
complete -c acct -n '__acct_at \'\'' -a 'remove' -d 'Remove an account and forget its cached usage and benches'
complete -c acct -n '__acct_at \'\'' -a 'rename' -d 'Rename an account: `acct rename OLD NEW`, or `acct rename NEW` to pick OLD from a list'
complete -c acct -n '__acct_at \'\'' -a 'shell-init' -d 'Print shell code that shows the active account in the prompt and sets up completion'
complete -c acct -n '__acct_at \'\'' -a 'stats' -d 'Tokens, requests, rotations and limits hit, and what they would cost at API prices'
complete -c acct -n '__acct_at \'\'' -a 'status' -d 'Which account each tool\'s credential file holds now, and the running `acct exec` sessions'
complete -c acct -n '__acct_at \'\'' -a 'use' -d 'Write an account into a tool\'s credential file (its login moves there)'
complete -c acct -n '__acct_at \'\'' -a 'watch' -d 'A live dashboard of the pool: bars, resets, sessions, recent rotations (q quits)'
complete -c acct -n '__acct_at \'\'' -l version -d 'Show the version'
complete -c acct -n '__acct_at \'\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'capacity\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'capacity\'' -l refresh -d 'Poll stale accounts\' usage first (otherwise no network)'
complete -c acct -n '__acct_at \'capacity\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'completion\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'completion\'' -x -a 'bash zsh fish'
complete -c acct -n '__acct_at \'disable\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'disable\'' -x -a '(__acct_accounts)'
complete -c acct -n '__acct_at \'doctor\'' -l fix -d 'Repair what can be repaired (tool settings)'
complete -c acct -n '__acct_at \'doctor\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'doctor\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'enable\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'enable\'' -x -a '(__acct_accounts)'
complete -c acct -n '__acct_at \'exec\'' -s t -l target -x -a 'claude-code opencode pi' -d 'claude-code, opencode or pi'
complete -c acct -n '__acct_at \'exec\'' -s a -l account -x -a '(__acct_accounts)' -d 'Start with this account'
complete -c acct -n '__acct_at \'exec\'' -l policy -x -d 'headroom, pace, round-robin or drain'
complete -c acct -n '__acct_at \'exec\'' -l explain -d 'Show how the account was chosen'
complete -c acct -n '__acct_at \'exec\'' -l no-rotate -d 'Never re-run the tool on another account'
complete -c acct -n '__acct_at \'exec\'' -l max-rotations -x -d 'Switch accounts at most this often (default from config)'
complete -c acct -n '__acct_at \'exec\'' -l wait -d 'When every account is limited, wait for the first reset'
complete -c acct -n '__acct_at \'exec\'' -l nested -d 'Run even inside another `acct exec`'
complete -c acct -n '__acct_at \'exec\'' -l no-proxy -l proxy -d 'Route the tool\'s API requests through a loopback proxy that reads live usage and quota refusals from every answer (default: on for claude-code)'
complete -c acct -n '__acct_at \'exec\'' -l isolate -d 'Claude Code only: run on a credentials file of this session\'s own (automatic when another `acct exec` uses the default one)'
complete -c acct -n '__acct_at \'exec\'' -l metrics-port -x -d 'Serve Prometheus metrics on http://127.0.0.1:PORT/metrics while the session runs'
complete -c acct -n '__acct_at \'exec\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'exec\'' -x -a '(__acct_wrapped)'
complete -c acct -n '__acct_at \'import\'' -s n -l name -x -d 'Name for a new account'
complete -c acct -n '__acct_at \'import\'' -l from -r -F -d 'Read this file (in the tool\'s format) instead of the tool\'s own'
complete -c acct -n '__acct_at \'import\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'import\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'import\'' -x -a 'claude-code opencode pi'
complete -c acct -n '__acct_at \'list\'' -s u -l usage -d 'Poll the usage of accounts whose cached values are stale first'
complete -c acct -n '__acct_at \'list\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'list\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'login\'' -l no-browser -d 'Only print the URL'
complete -c acct -n '__acct_at \'login\'' -l manual -d 'Paste the code the page shows (for a browser on another machine)'
complete -c acct -n '__acct_at \'login\'' -l timeout -x -d 'Seconds to wait for the browser or a pasted code'
complete -c acct -n '__acct_at \'login\'' -l api-key -d 'Store an API key (read from a hidden prompt or stdin) instead'
complete -c acct -n '__acct_at \'login\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'login\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'metrics\'' -l openmetrics -d 'OpenMetrics text instead of Prometheus text'
complete -c acct -n '__acct_at \'metrics\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'pool\'' -a 'init' -d 'Create the pool\'s schema (or upgrade it) and, for a new pool, its key file (0600); then move this machine\'s accounts into the pool, with their custody'
complete -c acct -n '__acct_at \'pool\'' -a 'join' -d 'Move this machine\'s accounts into an existing pool (needs a copy of its key file): deduplicated by account and organization; a second login of an account the pool has is not added, and said so'
complete -c acct -n '__acct_at \'pool\'' -a 'leave' -d 'Take this machine out of the pool: the lineages lent to its files go back to the pool first (refused, with the reason, while a running session\'s tool holds one)'
complete -c acct -n '__acct_at \'pool\'' -a 'reclaim' -d 'Declare a silent machine gone: the pool takes back the lineages its files hold'
complete -c acct -n '__acct_at \'pool\'' -a 'status' -d 'The pool\'s machines, their last contact, live sessions and which lineage each holds'
complete -c acct -n '__acct_at \'pool\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'pool init\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'pool init\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'pool join\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'pool join\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'pool leave\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'pool leave\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'pool reclaim\'' -l account -x -d 'Only this account\'s lineage'
complete -c acct -n '__acct_at \'pool reclaim\'' -l force -d 'Also a machine that is not silent (it must be gone)'
complete -c acct -n '__acct_at \'pool reclaim\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'pool reclaim\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'pool status\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'pool status\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'prompt\'' -s t -l target -x -a 'claude-code opencode pi' -d 'claude-code, opencode or pi'
complete -c acct -n '__acct_at \'prompt\'' -s f -l format -x -d 'Placeholders: {account} {target} {5h} {7d} {peak} {reset} {5h_reset} {7d_reset} (default: "{account} {peak}")'
complete -c acct -n '__acct_at \'prompt\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'refresh\'' -l all -d 'Refresh every OAuth account acct holds'
complete -c acct -n '__acct_at \'refresh\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'refresh\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'refresh\'' -x -a '(__acct_accounts)'
complete -c acct -n '__acct_at \'remove\'' -s y -l yes -d 'Do not ask for confirmation'
complete -c acct -n '__acct_at \'remove\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'remove\'' -x -a '(__acct_accounts)'
complete -c acct -n '__acct_at \'rename\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'rename\'' -x -a '(__acct_accounts)'
complete -c acct -n '__acct_at \'shell-init\'' -s t -l target -x -a 'claude-code opencode pi' -d 'claude-code, opencode or pi'
complete -c acct -n '__acct_at \'shell-init\'' -l completion -l no-completion -d 'Include the completion script'
complete -c acct -n '__acct_at \'shell-init\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'shell-init\'' -x -a 'bash zsh fish'
complete -c acct -n '__acct_at \'stats\'' -l since -x -d 'A span (30m, 12h, 7d, 2w) or a date (2026-11-30)'
complete -c acct -n '__acct_at \'stats\'' -l by -x -d 'Group by account, model, tool or day'
complete -c acct -n '__acct_at \'stats\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'stats\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'status\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'status\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'use\'' -s t -l target -x -a 'claude-code opencode pi' -d 'claude-code, opencode or pi (default: config default_target)'
complete -c acct -n '__acct_at \'use\'' -l force -d 'Replace a login in the tool\'s file that acct cannot take back (it is lost)'
complete -c acct -n '__acct_at \'use\'' -l json -d 'Print a versioned JSON document on stdout'
complete -c acct -n '__acct_at \'use\'' -s h -l help -d 'Show this message and exit'
complete -c acct -n '__acct_at \'use\'' -x -a '(__acct_accounts)'
complete -c acct -n '__acct_at \'watch\'' -l once -d 'Print the dashboard once and exit (so does a pipe)'
complete -c acct -n '__acct_at \'watch\'' -s h -l help -d 'Show this message and exit'
