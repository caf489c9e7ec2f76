package rewrite

import (
	"strings"
	"time"
)

// testCatalog is the catalog fixture shared by the golden tests, the
// fuzz target and the benchmarks.
type testCatalog struct {
	tables  map[string]*Table
	schemas []string
	gen     uint64
}

func (c *testCatalog) Lookup(schema, name string) (*Table, bool) {
	return c.find(schema, name, false)
}

// Cascading implements CascadeCatalog.
func (c *testCatalog) Cascading(schema, name string) (*Table, bool) {
	return c.find(schema, name, true)
}

func (c *testCatalog) find(schema, name string, unprotected bool) (*Table, bool) {
	if schema != "" {
		t, ok := c.tables[schema+"."+name]
		return t, ok && t.Unprotected == unprotected
	}
	for _, s := range c.schemas {
		if t, ok := c.tables[s+"."+name]; ok && t.Unprotected == unprotected {
			return t, true
		}
	}
	return nil, false
}

func (c *testCatalog) Generation() uint64 { return c.gen }

func cols(spec string) []Column {
	var out []Column
	for _, f := range strings.Split(spec, ",") {
		name, typ, _ := strings.Cut(strings.TrimSpace(f), " ")
		out = append(out, Column{Name: name, Type: typ})
	}
	return out
}

func fk(name string, child *Table, childCols, parentCols string, act FKAction) ForeignKey {
	f := ForeignKey{Name: name, Child: child, ChildColumns: strings.Split(childCols, ","), ParentColumns: strings.Split(parentCols, ","), OnDelete: act}
	if child != nil {
		f.ChildSchema, f.ChildName = child.Schema, child.Name
	}
	return f
}

// newTestCatalog builds:
//
//	public.t(id, name)                      simple table
//	public.sites → products → links         3-level ON DELETE CASCADE
//	public.sites → users (CASCADE), links.user_id → users (SET NULL)
//	public.sites → site_notes               child not protected
//	public.tree(id, parent_id → tree)       self-referencing CASCADE
//	public.measurements                     partitioned table; readings
//	                                        references its partition
//	                                        (oid 99001) CASCADE
//	public.cyc_a ⇄ public.cyc_b             CASCADE cycle
//	public.pair(a, b) ← pair_child(pa, pb)  two-column key, CASCADE
//	app.orders, "app"."Mixed Case"          other schema, odd names
//	public.wide                             column named like the table
//	app.tenants → sites                     unprotected, CASCADE into sites
//	public.orgs → teams → members           protected → unprotected →
//	                                        protected (CASCADE), teams →
//	                                        t_links (SET NULL, unprotected)
//	public.animals ← dogs ← puppies         inheritance: dogs protected,
//	               ← other.cats              cats unprotected; puppies →
//	                                        pup_toys (CASCADE)
//	public.hub → spoke_a, spoke_b           CASCADE both; spoke_a →
//	                                        spoke_b (SET NULL), generated
//	                                        before spoke_b's cascade;
//	                                        spoke_b has a column _ts_token
func newTestCatalog() *testCatalog {
	day := 24 * time.Hour
	mk := func(schema, name, shadow, c string, ret time.Duration) *Table {
		return &Table{Schema: schema, Name: name, Shadow: shadow, Columns: cols(c), Retention: ret, Signature: "sig:" + schema + "." + name}
	}
	t := mk("public", "t", "public_t", "id int, name text", 7*day)
	sites := mk("public", "sites", "public_sites", "id bigint, tenant_id int, name text", 30*day)
	products := mk("public", "products", "public_products", "id bigint, site_id bigint, name text", 7*day)
	users := mk("public", "users", "public_users", "id bigint, site_id bigint, email text", 14*day)
	links := mk("public", "links", "public_links", "id bigint, product_id bigint, user_id bigint", 7*day)
	tree := mk("public", "tree", "public_tree", "id int, parent_id int, label text", 7*day)
	meas := mk("public", "measurements", "public_measurements", "id int, ts timestamptz, v float8", time.Hour+500*time.Millisecond)
	meas.Partitioned = true
	cycA := mk("public", "cyc_a", "public_cyc_a", "id int, b_id int", 7*day)
	cycB := mk("public", "cyc_b", "public_cyc_b", "id int, a_id int", 7*day)
	pair := mk("public", "pair", "public_pair", "a int, b int, v text", 7*day)
	pairChild := mk("public", "pair_child", "public_pair_child", "id int, pa int, pb int", 7*day)
	orders := mk("app", "orders", "app_orders", "id int, note text", 7*day)
	mixed := mk("app", "Mixed Case", "app_Mixed Case", "id int", 7*day)
	mixed.Columns = append(mixed.Columns, Column{Name: `Weird "col`, Type: "text"})
	wide := mk("public", "wide", "public_wide", "id int, wide text", 7*day)
	through := func(schema, name, c string) *Table {
		return &Table{Schema: schema, Name: name, Unprotected: true, Columns: cols(c), Signature: "sig:" + schema + "." + name}
	}
	tenants := through("app", "tenants", "id int, name text")
	orgs := mk("public", "orgs", "public_orgs", "id int, name text", 7*day)
	teams := through("public", "teams", "id int, org_id int")
	members := mk("public", "members", "public_members", "id int, team_id int", 7*day)
	tLinks := through("public", "t_links", "id int, team_id int")
	animals := mk("public", "animals", "public_animals", "id int, name text", 7*day)
	dogs := mk("public", "dogs", "public_dogs", "id int, name text, breed text", 7*day)
	puppies := mk("public", "puppies", "public_puppies", "id int, name text, breed text, age int", 7*day)
	pupToys := mk("public", "pup_toys", "public_pup_toys", "id int, puppy_id int", 7*day)
	readings := mk("public", "readings", "public_readings", "id int, m_id int", 7*day)
	hub := mk("public", "hub", "public_hub", "id int", 7*day)
	spokeA := mk("public", "spoke_a", "public_spoke_a", "id int, hub_id int", 7*day)
	spokeB := mk("public", "spoke_b", "public_spoke_b", "id int, hub_id int, a_id int", 7*day)
	spokeB.Columns = append(spokeB.Columns, Column{Name: "_ts_token", Type: "text", ShadowName: "_ts_user__ts_token"})
	hub.Referencing = []ForeignKey{fk("spoke_a_hub_fk", spokeA, "hub_id", "id", Cascade), fk("spoke_b_hub_fk", spokeB, "hub_id", "id", Cascade)}
	spokeA.Referencing = []ForeignKey{fk("spoke_b_a_fk", spokeB, "a_id", "id", SetNull)}
	toPart := fk("readings_m_fk", readings, "m_id", "id", Cascade)
	toPart.ParentOID, toPart.ParentOIDs = 99001, []uint32{99001, 99002}
	meas.Referencing = []ForeignKey{toPart}

	sites.Referencing = []ForeignKey{
		fk("products_site_fk", products, "site_id", "id", Cascade),
		fk("users_site_fk", users, "site_id", "id", Cascade),
		{Name: "notes_site_fk", ChildSchema: "public", ChildName: "site_notes", ChildColumns: []string{"site_id"}, ParentColumns: []string{"id"}, OnDelete: Cascade},
	}
	products.Referencing = []ForeignKey{fk("links_product_fk", links, "product_id", "id", Cascade)}
	users.Referencing = []ForeignKey{fk("links_user_fk", links, "user_id", "id", SetNull)}
	tree.Referencing = []ForeignKey{fk("tree_parent_fk", tree, "parent_id", "id", Cascade)}
	cycA.Referencing = []ForeignKey{fk("b_a_fk", cycB, "a_id", "id", Cascade)}
	cycB.Referencing = []ForeignKey{fk("a_b_fk", cycA, "b_id", "id", Cascade)}
	pair.Referencing = []ForeignKey{fk("pc_fk", pairChild, "pa,pb", "a,b", Cascade)}
	tenants.Referencing = []ForeignKey{fk("sites_tenant_fk", sites, "tenant_id", "id", Cascade)}
	orgs.Referencing = []ForeignKey{fk("teams_org_fk", teams, "org_id", "id", Cascade)}
	animals.Children = []*Table{dogs, puppies}
	dogs.Children = []*Table{puppies}
	puppies.Referencing = []ForeignKey{fk("toys_puppy_fk", pupToys, "puppy_id", "id", Cascade)}
	teams.Referencing = []ForeignKey{fk("members_team_fk", members, "team_id", "id", Cascade), fk("tl_team_fk", tLinks, "team_id", "id", SetNull)}

	c := &testCatalog{tables: map[string]*Table{}, schemas: []string{"public", "app"}, gen: 1}
	for i, x := range []*Table{t, sites, products, users, links, tree, meas, cycA, cycB, pair, pairChild, orders, mixed, wide,
		tenants, orgs, teams, members, tLinks, animals, dogs, puppies, pupToys, readings, hub, spokeA, spokeB} {
		x.OID = uint32(16384 + i)
		c.tables[x.Schema+"."+x.Name] = x
	}
	return c
}

// HoldsProtected implements SchemaCatalog.
func (c *testCatalog) HoldsProtected(schema string) bool {
	for _, t := range c.tables {
		if t.Schema == schema {
			return true
		}
	}
	return false
}
