# Prints `make help` from the Makefile and project.mk: a `## text` line documents the target rule
# that follows it; `##@ Title` starts a section. Pure awk so that `make help` stays instant.
BEGIN { if (color == "") color = 0 }
/^##@ / { printf "\n%s\n", substr($0, 5); doc = ""; next }
/^## /  { doc = substr($0, 4); next }
/^[a-zA-Z0-9_.-]+( [a-zA-Z0-9_.-]+)*:([^=]|$)/ {
    if (doc != "") {
        split($0, parts, ":")
        names = parts[1]
        gsub(/ /, ", ", names)
        if (color) printf "  \033[36m%-24s\033[0m %s\n", names, doc
        else printf "  %-24s %s\n", names, doc
    }
    doc = ""; next
}
{ doc = "" }
END { printf "\nVariables go on the make line, e.g. `make job overwrite=true`, `make download file=data/`.\n" }
