# SPDX-License-Identifier: MIT
# bash completion for wavectl. Stream ids come from `wavectl streams --json`
# (the streams the bridge currently follows), when the bridge answers.

_wavectl_streams()
{
    local opts=()
    [[ -n ${_wavectl_socket-} ]] && opts+=(--socket "$_wavectl_socket")
    [[ -n ${_wavectl_dbus-} ]] && opts+=(--dbus)
    wavectl "${opts[@]}" streams --json 2>/dev/null \
        | grep -o '"stream_id":"[^"]*"' | cut -d'"' -f4
}

_wavectl()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        # Without the bash-completion package: COMP_WORDS as bash splits them.
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]-}
    fi

    local commands="status streams tail chat react watch help"
    local global="--socket --dbus --bus= --help --version"
    local events="stream.started stream.ended stream.health viewer.joined viewer.left analytics.update chat.message reaction.received"

    local command="" i _wavectl_socket="" _wavectl_dbus="" positional=0
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --socket|-s) _wavectl_socket=${words[i + 1]}; ((i++)) ;;
            --socket=*) _wavectl_socket=${words[i]#--socket=} ;;
            --dbus|--bus=*) _wavectl_dbus=1 ;;
            --events|-e|--bus|--history) ((i++)) ;;
            -*) ;;
            *) if [[ -z $command ]]; then command=${words[i]}; else ((positional++)); fi ;;
        esac
    done

    case $prev in
        --socket|-s)
            if declare -F _filedir >/dev/null; then
                _filedir
            else
                COMPREPLY=($(compgen -f -- "$cur"))
            fi
            return
            ;;
        --bus)
            COMPREPLY=($(compgen -W "system session" -- "$cur"))
            return
            ;;
        --history)
            # A number: nothing to offer.
            return
            ;;
        --events|-e)
            # Complete the last item of a comma-separated list.
            local head="" last=$cur
            if [[ $cur == *,* ]]; then
                head=${cur%,*},
                last=${cur##*,}
            fi
            COMPREPLY=($(compgen -P "$head" -W "$events" -- "$last"))
            compopt -o nospace 2>/dev/null
            return
            ;;
    esac

    if [[ $cur == --bus=* ]]; then
        COMPREPLY=($(compgen -W "system session" -- "${cur#--bus=}"))
        return
    fi

    if [[ -z $command ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global" -- "$cur"))
            [[ ${COMPREPLY-} == *= ]] && compopt -o nospace 2>/dev/null
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    if [[ $cur == -* ]]; then
        local options="$global"
        case $command in
            status|streams) options+=" --json" ;;
            tail) options+=" --json --events --history" ;;
        esac
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
        [[ ${COMPREPLY-} == *= ]] && compopt -o nospace 2>/dev/null
        return
    fi

    case $command in
        tail)
            COMPREPLY=($(compgen -W "$(_wavectl_streams)" -- "$cur"))
            ;;
        watch|chat|react)
            # Only the first argument is a stream; the text is free.
            if ((positional == 0)); then
                COMPREPLY=($(compgen -W "$(_wavectl_streams)" -- "$cur"))
            fi
            ;;
    esac
} &&
    complete -F _wavectl wavectl
