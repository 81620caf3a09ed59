package faces

import _ "embed"

//go:embed assets/manifests.yaml
var manifests []byte

// Manifests returns the Faces demo as multi-document YAML: namespace faces,
// the faces-gui, face, smiley and color Deployments and Services as the
// faces-chart 1.4.1 defaults render them, and the Emissary Listeners, Host
// and Mappings of the workshop's k8s/01-base (/faces/ is the GUI). The
// caller gets its own copy.
func Manifests() []byte {
	return append([]byte(nil), manifests...)
}
