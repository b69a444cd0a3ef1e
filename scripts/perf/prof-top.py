import json,sys,collections
p=json.load(open(sys.argv[1]))
nodes={n['id']:n for n in p['nodes']}
dt=collections.Counter()
ts=p['timeDeltas']; samples=p['samples']
for s,d in zip(samples,ts): dt[s]+=d
self_t=collections.Counter(); 
for nid,t in dt.items():
    cf=nodes[nid]['callFrame']; key=f"{cf['functionName'] or '(anon)'} {cf['url'].split('/')[-1]}:{cf['lineNumber']}"
    self_t[key]+=t
tot=sum(dt.values())
print("total ms", tot/1000)
for k,v in self_t.most_common(int(sys.argv[2]) if len(sys.argv)>2 else 30): print(f"{v/1000:9.1f} ms {100*v/tot:5.1f}%  {k}")
# inclusive by url file
parent={}
for n in p['nodes']:
    for c in n.get('children',[]): parent[c]=n['id']
incl=collections.Counter()
for nid,t in dt.items():
    seen=set(); x=nid
    while x is not None:
        cf=nodes[x]['callFrame']; f=cf['url'].split('/')[-1]+":"+(cf['functionName'] or '(anon)')
        if f not in seen: incl[f]+=t; seen.add(f)
        x=parent.get(x)
print("--- inclusive")
for k,v in incl.most_common(45): print(f"{v/1000:9.1f} ms {100*v/tot:5.1f}%  {k}")
