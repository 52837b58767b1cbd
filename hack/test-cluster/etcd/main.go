// Command etcd is etcd's own server entry point, built from Go modules.
//
// go.etcd.io/etcd/server/v3 carries replace directives, so `go install ...@version` refuses
// it; this wrapper module requires it like any library and calls the real main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
