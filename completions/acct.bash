# bash completion for acct
# Generated from the command tree by `python -m acct.cli.gen`; do not edit.

_acct_complete_kind() { # KIND WORD: complete WORD as a value of KIND
    local values
    case $1 in
    account*) COMPREPLY+=($(compgen -W "$(command acct __complete accounts 2>/dev/null)" -- "$2")) ;;
    choice:*) values=${1#choice:}; COMPREPLY+=($(compgen -W "${values//,/ }" -- "$2")) ;;
    file*) compopt -o filenames 2>/dev/null; COMPREPLY+=($(compgen -f -- "$2")) ;;
    dir*) compopt -o filenames 2>/dev/null; COMPREPLY+=($(compgen -d -- "$2")) ;;
    esac
}

_acct_arg_kind() { # INDEX: the kind of the INDEX-th positional argument (1-based)
    local -a kinds=($_acct_args)
    local n=${#kinds[@]}
    if (($1 <= n)); then
        _acct_kind=${kinds[$1 - 1]}
    elif ((n)) && [[ ${kinds[n - 1]} == *'*' ]]; then
        _acct_kind=${kinds[n - 1]}
    else
        _acct_kind=none
    fi
}

_acct() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local path="" word i=1 npos=0 dashdash=0 start=-1 opt="" _acct_kind
    local _acct_cmds _acct_opts _acct_vals _acct_args
    COMPREPLY=()
    _acct_spec ""
    while ((i < COMP_CWORD)); do
        word=${COMP_WORDS[i]}
        if ((!dashdash)) && [[ $word == -- ]]; then
            dashdash=1
        elif ((!dashdash)) && [[ $word == -?* ]]; then
            if [[ " $_acct_vals " == *" $word="* ]]; then
                if [[ ${COMP_WORDS[i + 1]} == = ]]; then ((i += 2)); else ((i += 1)); fi
            fi
        elif ((!dashdash && npos == 0)) && [[ " $_acct_cmds " == *" $word "* ]]; then
            path=${path:+$path }$word
            _acct_spec "$path"
        else
            ((npos += 1))
            _acct_arg_kind $npos
            if [[ $_acct_kind == command* ]]; then
                start=$i
                break
            fi
        fi
        ((i += 1))
    done
    if ((start < 0 && !dashdash)); then
        if [[ $cur == = ]]; then
            opt=$prev
            cur=""
        elif [[ $prev == = ]]; then
            opt=${COMP_WORDS[COMP_CWORD - 2]}
        elif [[ $prev == -?* ]]; then
            opt=$prev
        fi
        if [[ -n $opt && " $_acct_vals " == *" $opt="* ]]; then
            local rest=" $_acct_vals "
            rest=${rest#*" $opt="}
            _acct_complete_kind "${rest%% *}" "$cur"
            return 0
        fi
    fi
    if ((start < 0)); then
        _acct_arg_kind $((npos + 1))
        [[ $_acct_kind == command* && ($dashdash == 1 || $cur != -*) ]] && start=$COMP_CWORD
    fi
    if ((start >= 0)); then
        if declare -F _command_offset >/dev/null; then
            _command_offset $start
        elif ((start == COMP_CWORD)); then
            COMPREPLY=($(compgen -c -- "$cur"))
        else
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
        return 0
    fi
    if ((!dashdash)) && [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$_acct_opts" -- "$cur"))
        return 0
    fi
    if ((npos == 0)) && [[ -n $_acct_cmds ]]; then
        COMPREPLY=($(compgen -W "$_acct_cmds" -- "$cur"))
        return 0
    fi
    _acct_complete_kind "$_acct_kind" "$cur"
    return 0
}

_acct_spec() { # PATH: what the command at PATH accepts
    case $1 in
    '')
        _acct_cmds='capacity completion disable doctor enable exec import list login metrics pool prompt refresh remove rename shell-init stats status use watch' _acct_opts='--version -h --help'
        _acct_vals='' _acct_args='' ;;
    'capacity')
        _acct_cmds='' _acct_opts='--json --refresh -h --help'
        _acct_vals='' _acct_args='' ;;
    'completion')
        _acct_cmds='' _acct_opts='-h --help'
        _acct_vals='' _acct_args='choice:bash,zsh,fish' ;;
    'disable')
        _acct_cmds='' _acct_opts='-h --help'
        _acct_vals='' _acct_args='account' ;;
    'doctor')
        _acct_cmds='' _acct_opts='--fix --json -h --help'
        _acct_vals='' _acct_args='' ;;
    'enable')
        _acct_cmds='' _acct_opts='-h --help'
        _acct_vals='' _acct_args='account' ;;
    'exec')
        _acct_cmds='' _acct_opts='-t --target -a --account --policy --explain --no-rotate --max-rotations --wait --nested --no-proxy --proxy --isolate --metrics-port -h --help'
        _acct_vals='-t=choice:claude-code,opencode,pi --target=choice:claude-code,opencode,pi -a=account --account=account --policy=none --max-rotations=none --metrics-port=none' _acct_args='command*' ;;
    'import')
        _acct_cmds='' _acct_opts='-n --name --from --json -h --help'
        _acct_vals='-n=none --name=none --from=file' _acct_args='choice:claude-code,opencode,pi' ;;
    'list')
        _acct_cmds='' _acct_opts='-u --usage --json -h --help'
        _acct_vals='' _acct_args='' ;;
    'login')
        _acct_cmds='' _acct_opts='--no-browser --manual --timeout --api-key --json -h --help'
        _acct_vals='--timeout=none' _acct_args='none' ;;
    'metrics')
        _acct_cmds='' _acct_opts='--openmetrics -h --help'
        _acct_vals='' _acct_args='' ;;
    'pool')
        _acct_cmds='init join leave reclaim status' _acct_opts='-h --help'
        _acct_vals='' _acct_args='' ;;
    'pool init')
        _acct_cmds='' _acct_opts='--json -h --help'
        _acct_vals='' _acct_args='' ;;
    'pool join')
        _acct_cmds='' _acct_opts='--json -h --help'
        _acct_vals='' _acct_args='' ;;
    'pool leave')
        _acct_cmds='' _acct_opts='--json -h --help'
        _acct_vals='' _acct_args='' ;;
    'pool reclaim')
        _acct_cmds='' _acct_opts='--account --force --json -h --help'
        _acct_vals='--account=none' _acct_args='none' ;;
    'pool status')
        _acct_cmds='' _acct_opts='--json -h --help'
        _acct_vals='' _acct_args='' ;;
    'prompt')
        _acct_cmds='' _acct_opts='-t --target -f --format -h --help'
        _acct_vals='-t=choice:claude-code,opencode,pi --target=choice:claude-code,opencode,pi -f=none --format=none' _acct_args='' ;;
    'refresh')
        _acct_cmds='' _acct_opts='--all --json -h --help'
        _acct_vals='' _acct_args='account' ;;
    'remove')
        _acct_cmds='' _acct_opts='-y --yes -h --help'
        _acct_vals='' _acct_args='account' ;;
    'rename')
        _acct_cmds='' _acct_opts='-h --help'
        _acct_vals='' _acct_args='account none' ;;
    'shell-init')
        _acct_cmds='' _acct_opts='-t --target --completion --no-completion -h --help'
        _acct_vals='-t=choice:claude-code,opencode,pi --target=choice:claude-code,opencode,pi' _acct_args='choice:bash,zsh,fish' ;;
    'stats')
        _acct_cmds='' _acct_opts='--since --by --json -h --help'
        _acct_vals='--since=none --by=none' _acct_args='' ;;
    'status')
        _acct_cmds='' _acct_opts='--json -h --help'
        _acct_vals='' _acct_args='' ;;
    'use')
        _acct_cmds='' _acct_opts='-t --target --force --json -h --help'
        _acct_vals='-t=choice:claude-code,opencode,pi --target=choice:claude-code,opencode,pi' _acct_args='account' ;;
    'watch')
        _acct_cmds='' _acct_opts='--once -h --help'
        _acct_vals='' _acct_args='' ;;
    *) _acct_cmds='' _acct_opts='' _acct_vals='' _acct_args='' ;;
    esac
}

complete -F _acct acct
