import json, random, string
random.seed(7)
A=string.ascii_letters+string.digits
def rnd(n, chars=A):
    need=[c for c in (string.digits, string.ascii_uppercase, string.ascii_lowercase) if set(c)&set(chars)]
    while True:
        s=''.join(random.choice(chars) for _ in range(n))
        if all(any(ch in group for ch in s) for group in need): return s
pos=[]
def P(kind, secret, text): pos.append({"kind":kind,"secret":secret,"text":text.replace("{S}",secret)})
D=string.digits
xoxb="xoxb-"+rnd(10,D)+"-"+rnd(13,D)+"-"+rnd(24)
xoxp="xoxp-"+rnd(10,D)+"-"+rnd(12,D)+"-"+rnd(32)
P("slack_token",xoxb,"the bot token is {S}, rotate it")
P("slack_token",xoxb,"```\nexport SLACK_BOT_TOKEN={S}\n```")
P("slack_token",xoxp,"*{S}*")
xapp="xapp-1-A"+rnd(10,string.ascii_uppercase+D)+"-"+rnd(13,D)+"-"+rnd(64,"0123456789abcdef")
P("slack_app_token",xapp,"socket mode needs `{S}`")
for p in ["ghp","gho","ghu","ghs","ghr"]:
    P("github_token",p+"_"+rnd(36),"token: {S}")
pat="github_pat_11"+rnd(20)+"_"+rnd(59)
P("github_token",pat,"use this fine-grained PAT {S} for the bot")
P("github_token","ghs_"+rnd(36),"git clone https://x-access-token:{S}@github.com/acme/api.git")
P("github_token","ghp_"+rnd(36),"<https://example.com/settings|{S}>")
P("openai_key","sk-proj-"+rnd(48,A+"_-"),"OPENAI_API_KEY={S}")
P("openai_key","sk-"+rnd(48),"> my key is {S}, why does it 401?")
ant="sk-ant-api03-"+rnd(93,A+"_-")+"AA"
P("anthropic_key",ant,"anthropic: {S}")
P("anthropic_key",ant,"```python\nclient = Anthropic(api_key=\"{S}\")\n```")
akid="AKIA"+rnd(16,string.ascii_uppercase+D)
awss=rnd(40,A+"/+")
P("aws_access_key_id",akid,"[default]\naws_access_key_id = {S}")
P("aws_secret_key",awss,"[default]\naws_access_key_id = "+akid+"\naws_secret_access_key = {S}")
P("aws_secret_key",awss,akid+" {S}")
P("aws_secret_key",awss,"AWS_SECRET_ACCESS_KEY: \"{S}\"")
goog="AIza"+rnd(35,A+"_-")
P("google_api_key",goog,"maps key {S}")
P("google_api_key",goog,"https://maps.googleapis.com/maps/api/geocode/json?address=x&key={S}")
P("stripe_key","sk_live_"+rnd(24),"stripe {S}")
P("stripe_key","rk_test_"+rnd(24),"`{S}`")
P("stripe_key","whsec_"+rnd(32),"webhook signing secret: {S}")
body="MIIEow"+rnd(60,A+"+/")
P("private_key",body,"-----BEGIN RSA PRIVATE KEY-----\n{S}\n"+rnd(64,A+"+/")+"\n-----END RSA PRIVATE KEY-----")
body2="b3BlbnNzaC1rZXktdjEAAAAA"+rnd(40,A+"+/")
P("private_key",body2,"```\n-----BEGIN OPENSSH PRIVATE KEY-----\n{S}\n"+rnd(70,A+"+/"))
jwt="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
P("jwt",jwt,"session cookie: {S}")
P("jwt",jwt,"<https://app.example.com/?token={S}|open>")
bearer=rnd(32)
P("authorization",bearer,"curl -H 'Authorization: Bearer {S}' https://api.example.com")
P("authorization","dXNlcjpwYXNzd29yZA==","Authorization: Basic {S}")
P("authorization",bearer,"\"headers\": {\"Authorization\": \"token {S}\"}")
P("url_password","S3cretPassw0rd","DATABASE_URL=postgres://chime:{S}@db.internal:5432/chime")
P("url_password","hunter2hunter2","<https://admin:{S}@ci.example.com/job/42|the CI job>")
P("url_password","p4ssw0rd","redis://:{S}@cache:6379/0")
P("assigned_secret","a8f5f167f44f4964e6c998dee827110c","MY_SERVICE_TOKEN: \"{S}\"")
P("assigned_secret","Xk9#mP2$vL7@qR4!zT","DATABASE_PASSWORD={S}")
P("assigned_secret","9f86d081884c7d659a2feaa0c55ad015","```\nWEBHOOK_SECRET={S}\nLOG_LEVEL=debug\n```")
P("assigned_secret","Zq8vN3xK5pR2mW7tY4bJ","_internal_api_key = '{S}'_")
with open("positives.jsonl","w") as f:
    for p in pos: f.write(json.dumps(p)+"\n")
neg=[
 ("git sha","fixed in 4b825dc642cb6eb9a060e54bf8d69288fbee4904, see a1b2c3d"),
 ("uuid","request id 123e4567-e89b-12d3-a456-426614174000 failed"),
 ("base64 image","![logo](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==)"),
 ("lockfile hash","\"integrity\": \"sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+5DgPr8O5yyB+6qA3vs0zVE6Hm2IJadmdvgCDKb==\""),
 ("cargo checksum","checksum = \"5e8d3fb1e3c4c9b8d1d1b4cbe4e2b3f6f87f5e0c9d8a4d2b1a7c3e9f0b2d4a6c\""),
 ("sk- in prose","we moved from sk-learn to our own sk- prefixed estimators"),
 ("sk-learn long","sk-learn-compatible-estimators-and-transformers are fine"),
 ("sk-proj short","the sk-proj format replaced the old one"),
 ("settings","MAX_KEY=100 and PRIMARY_KEY=id, PASSWORD=changeme in the example"),
 ("key in prose","the API_KEY is stored in vault; the key point is rotation"),
 ("bearer prose","Bearer authentication-is-required for this endpoint; Authorization: required"),
 ("url without password","https://github.com/acme/api/pull/7 and postgres://postgres@127.0.0.1:5432/test"),
 ("url with port","http://localhost:8080/health and http://[::1]:9000/x"),
 ("ssh remote","git remote add origin git@github.com:acme/api.git"),
 ("short akia","AKIAEXAMPLE is too short to be a key id"),
 ("public key","-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"),
 ("certificate","-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUXYZ\n-----END CERTIFICATE-----"),
 ("aws placeholder","aws_secret_access_key = <your secret key here>"),
 ("slack ids","ping <@U0123ABCD> in <#C0123456789|general>, ts 1700000000.000100"),
 ("token prefixes prose","ghp_ tokens are classic PATs; xoxb- tokens are bot tokens"),
 ("eyJ prose","the payload starts with eyJ because of base64 of {\""),
 ("cache key","cache_key = \"build-linux-x64\"; SORT_KEY: name"),
 ("docker digest","image@sha256:9b2a8f1c3d4e5f60718293a4b5c6d7e8f9012345678901234567890abcdef12"),
 ("npm resolved","\"resolved\": \"https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz\""),
 ("semver and hash","bumped tokio to 1.41.0 (commit 9f8e7d6c5b4a)"),
 ("stripe prose","Stripe's sk_live_ keys and rk_ keys must never be pasted here"),
 ("google prose","Google API keys begin with AIza and are 39 characters"),
 ("jwt prose","a JWT looks like xxxxx.yyyyy.zzzzz"),
 ("emails","mail ops@example.com or user:name@example.com"),
 ("code","let token = get_token(); if password.len() < 8 { bail!(\"short\") }"),
]
with open("negatives.jsonl","w") as f:
    for why,t in neg: f.write(json.dumps({"why":why,"text":t})+"\n")
print(len(pos), len(neg))
