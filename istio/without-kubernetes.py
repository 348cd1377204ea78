"""Lets the pinned istiod snapshot run from files without Kubernetes (see install-istio.sh).

Two fixes, each the smallest that makes file-based configuration behave as Kubernetes-based
configuration does in this snapshot:
1. With no Kubernetes registry there is no multicluster controller, and the ServiceEntry
   registry's constructor asks it for the config cluster's Namespace collection: a nil
   dereference at startup. Given an empty collection instead, ServiceEntries are read as in a
   cluster whose namespaces carry no labels or annotations.
2. This snapshot turns WasmPlugins into its new internal TrafficExtension form with a
   translation controller that only the Kubernetes config store registers: from files,
   WasmPlugins are read and then silently ignored. The file config source registers the same
   controller, as the Kubernetes one does.
Fails loudly if the code a fix replaces is not there (another snapshot: re-check both).
"""

import pathlib
import sys

FIXES = [
    (
        "pilot/pkg/serviceregistry/serviceentry/controller.go",
        """\
		s.inputs.Namespaces = multiclusterController.ConfigCluster().Namespaces()
""",
        """\
		if multiclusterController != nil {
			s.inputs.Namespaces = multiclusterController.ConfigCluster().Namespaces()
		} else {
			s.inputs.Namespaces = krt.NewStaticCollection[*v1.Namespace](nil, nil, s.opts.WithName("inputs/Namespaces")...)
		}
""",
    ),
    (
        "pilot/pkg/bootstrap/configcontroller.go",
        """\
			s.ConfigStores = append(s.ConfigStores, configController)
			log.Infof("Started File configSource %s", configSource.Address)
""",
        """\
			s.ConfigStores = append(s.ConfigStores, configController)
			s.ConfigStores = append(s.ConfigStores, extensions.NewController(configController, s.XDSServer, args.KrtDebugger))
			log.Infof("Started File configSource %s", configSource.Address)
""",
    ),
]

root = pathlib.Path(sys.argv[1])
for file, broken, fixed in FIXES:
    path = root / file
    source = path.read_text()
    if source.count(broken) != 1:
        sys.exit(f"{path}: the code this fix replaces is not there once; re-check the fix")
    path.write_text(source.replace(broken, fixed))
