#!/usr/bin/env python3
# Would a parallel order for the TurboQuant encoder's sums change its records? A pure-Python model of the angle search
# (kv/turboquant/tq_codec.cpp's choose_codes_by_angle; the GPU's tq_encode_kernel does the same in the same order):
# Gaussian group vectors (g 128, 5 bits, a Lloyd-Max codebook for N(0, 1/g) fitted here on samples), the codes of
# 17 scales, then <u, c> and ||c||^2 per scale (a) as today, summed in index order and updated by the moved
# coordinates scale after scale, (b) from scratch per scale as 32 lanes' partial sums of 4 coordinates combined by
# an xor butterfly. Counts the vectors whose chosen scale or f16 scalar differ. Exploration for docs/cuda.md (the
# next device session's step 1), not a test. Usage: python3 scripts/tq_sum_order_model.py [N]
import random, math, struct, bisect
g=128; bits=5; S=17; span=0.25
random.seed(1)
# approximate Lloyd-Max for N(0,1/g): iterate Lloyd on samples
sd=1/math.sqrt(g)
samples=sorted(random.gauss(0,sd) for _ in range(200000))
n=1<<bits
cent=[samples[int((i+0.5)/n*len(samples))] for i in range(n)]
for it in range(30):
    bnd=[(cent[i]+cent[i+1])/2 for i in range(n-1)]
    sums=[0.0]*n; cnt=[0]*n
    for x in samples[::5]:
        k=bisect.bisect_left(bnd,x); sums[k]+=x; cnt[k]+=1
    cent=[sums[i]/cnt[i] if cnt[i] else cent[i] for i in range(n)]
bnd=[(cent[i]+cent[i+1])/2 for i in range(n-1)]
def f32(x): return struct.unpack('f',struct.pack('f',x))[0]
cent=[f32(c) for c in cent]; bnd=[f32(b) for b in bnd]
lam=[f32(1-span+2*span*s/(S-1)) for s in range(S)]
def f16(x): return struct.unpack('e',struct.pack('e',x))[0]
def tree(vals):
    # lanes: 32 partials of 4 in order, then xor butterfly (same value in every lane)
    p=[0.0]*32
    for l in range(32):
        acc=0.0
        for j in range(4):
            i=l+32*j
            acc+=vals[i]
        p[l]=acc
    o=16
    while o>0:
        p=[p[l]+p[l^o] for l in range(32)]
        o//=2
    return p[0]
import sys
diff_scale=0; diff_scalar=0; N=int(sys.argv[1]) if len(sys.argv) > 1 else 4000
for trial in range(N):
    x=[f32(random.gauss(0,1)) for _ in range(g)]
    ss=0.0
    for v in x: ss+=v*v
    norm=math.sqrt(ss); inv=1/norm
    u=[f32(v*inv) for v in x]
    codes=[[bisect.bisect_left(bnd, f32(ui*lam[s])) for ui in u] for s in range(S)]
    # sequential incremental (CPU)
    dot=0.0;c2=0.0
    for i in range(g):
        c=cent[codes[0][i]]; dot+=u[i]*c; c2+=c*c
    seq=[]
    for s in range(S):
        if s>0:
            for i in range(g):
                if codes[s][i]!=codes[s-1][i]:
                    cn=cent[codes[s][i]]; co=cent[codes[s-1][i]]
                    dot+=u[i]*f32(cn-co); c2+=(cn*cn-co*co)
        seq.append((dot,c2))
    par=[(tree([u[i]*cent[codes[s][i]] for i in range(g)]), tree([cent[codes[s][i]]**2 for i in range(g)])) for s in range(S)]
    def choose(sums):
        best=-2; bs=S//2; bd=0; pc=-2; pd=0
        for s,(d,q) in enumerate(sums):
            cs=d/math.sqrt(q) if q>0 else -1
            if s==S//2: pc=cs; pd=d
            elif cs>best: best=cs; bd=d; bs=s
        if pc>=best: bs=S//2; bd=pd
        return bs, f16(norm/bd if bd>0 else norm)
    a=choose(seq); b=choose(par)
    if a[0]!=b[0]: diff_scale+=1
    elif a[1]!=b[1]: diff_scalar+=1
print(f"{N} vectors: chosen scale differs {diff_scale}, f16 scalar differs (same scale) {diff_scalar}")
