// The grpc-gateway peer of `make bench`: grpc-gateway's generated reverse proxy for
// catalog.CatalogService (from the same protos and google.api.http annotations the edge
// transcodes with), behind the JWT check a Go team would write — golang-jwt verifying ES256
// tokens with keys from keyfunc (a JWKS) — so the bench compares like for like: the same
// routes, the same token rules, JSON with the protos' field names.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	catalog "edge.example/bench/grpcgateway/gen/catalog"
)

// userHeader carries the verified subject to the backend, as the edge's auth filter does.
const userHeader = "x-user-id"

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve HTTP on")
	backend := flag.String("catalog", "", "catalog's gRPC address (host:port)")
	jwksFile := flag.String("jwks", "", "the authority's public keys, a JWKS file")
	flag.Parse()

	jwks, err := os.ReadFile(*jwksFile)
	if err != nil {
		log.Fatalf("reading the keys: %v", err)
	}
	keys, err := keyfunc.NewJWKSetJSON(jwks)
	if err != nil {
		log.Fatalf("the keys: %v", err)
	}
	conn, err := grpc.NewClient(*backend, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatalf("catalog at %s: %v", *backend, err)
	}
	mux := runtime.NewServeMux(
		// The edge prints the protos' field names and leaves defaults out; so does this.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{UseProtoNames: true},
		}),
		runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
			if strings.EqualFold(key, userHeader) {
				return userHeader, true
			}
			return runtime.DefaultHeaderMatcher(key)
		}),
	)
	if err := catalog.RegisterCatalogServiceHandler(context.Background(), mux, conn); err != nil {
		log.Fatalf("routes: %v", err)
	}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen on %s: %v", *listen, err)
	}
	// The bench waits for this line, as for the services'.
	fmt.Printf("listening on %s\n", listener.Addr())
	log.Fatal(http.Serve(listener, authenticate(keys.Keyfunc, mux)))
}

// needsToken is the bench's policy (edge.json's, with reads of one item authenticated too):
// listing is public, everything else needs a valid token.
func needsToken(r *http.Request) bool {
	return !(r.Method == http.MethodGet && r.URL.Path == "/catalog/items")
}

// authenticate verifies the bearer token and passes its subject on; a request that needs one
// and has none, or has a bad one, is answered 401 with a google.rpc.Status body.
func authenticate(keyfunc jwt.Keyfunc, next http.Handler) http.Handler {
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithIssuer("authority"),
		jwt.WithAudience("edge"),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(60*time.Second),
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only the token says who the caller is.
		r.Header.Del(userHeader)
		header := r.Header.Get("Authorization")
		if len(header) < 7 || !strings.EqualFold(header[:7], "bearer ") {
			if needsToken(r) {
				refuse(w, "a bearer token is required")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		token, err := parser.Parse(header[7:], keyfunc)
		if err != nil {
			refuse(w, "the token is not valid")
			return
		}
		subject, err := token.Claims.GetSubject()
		if err != nil || subject == "" {
			refuse(w, "the token names no subject")
			return
		}
		r.Header.Set(userHeader, subject)
		next.ServeHTTP(w, r)
	})
}

func refuse(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("WWW-Authenticate", `Bearer realm="edge"`)
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": 16, "message": message})
}
