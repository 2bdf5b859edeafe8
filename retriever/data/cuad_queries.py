"""How a lawyer would search for each CUAD clause category.

Five phrasings per category: the first three are training queries, the last
two are test queries, so test measures unseen contracts *and* unseen wording.
Confusable neighbours (cap vs uncapped liability, non-compete vs exclusivity
vs no-solicit, anti-assignment vs change of control, the license variants,
the three dates) are phrased close to each other on purpose: separating them is
what domain tuning is for.
"""

import hashlib
import re

N_TRAIN_PHRASINGS = 3

CATEGORY_QUERIES: dict[str, list[str]] = {
    "Agreement Date": [
        "date the agreement was signed",
        "when was this contract entered into",
        "execution date of the agreement",
        "on what date was the contract made",
        "agreement dated as of",
    ],
    "Effective Date": [
        "when does the agreement become effective",
        "effective date of the contract",
        "date on which the terms take effect",
        "commencement date when obligations start",
        "this agreement shall be effective as of",
    ],
    "Expiration Date": [
        "when does the initial term of the agreement expire",
        "expiration of the contract term",
        "how long does the agreement last before it ends",
        "the term shall continue until",
        "end date of the initial term",
    ],
    "Renewal Term": [
        "automatic renewal of the agreement after the initial term",
        "renewal periods and extensions of the term",
        "agreement renews for successive periods",
        "evergreen clause auto-renew",
        "how long is each renewal term",
    ],
    "Notice Period To Terminate Renewal": [
        "notice required to prevent automatic renewal",
        "how many days notice to terminate before renewal",
        "written notice of non-renewal period",
        "deadline to give notice that the contract will not renew",
        "opt out of renewal by notifying the other party in advance",
    ],
    "Governing Law": [
        "which state's law governs this agreement",
        "governing law and jurisdiction clause",
        "choice of law provision",
        "agreement shall be construed in accordance with the laws of",
        "applicable law for interpreting the contract",
    ],
    "Most Favored Nation": [
        "most favored nation pricing clause",
        "buyer gets the benefit of better terms offered to third parties",
        "price no less favorable than given to any other customer",
        "MFN provision matching better prices granted to others",
        "if supplier offers lower prices to another customer the same must be offered here",
    ],
    "Competitive Restriction Exception": [
        "exceptions to the non-compete or exclusivity restrictions",
        "carve-out allowing competing activities",
        "notwithstanding the exclusivity, a party may",
        "permitted exceptions to restrictive covenants",
        "activities excluded from the non-competition obligation",
    ],
    "Non-Compete": [
        "non-compete clause restricting competition",
        "party may not engage in a competing business",
        "covenant not to compete in a territory",
        "restriction on developing or selling competitive products",
        "shall not compete with the company during the term",
    ],
    "Exclusivity": [
        "exclusive dealing commitment",
        "exclusive distributor rights in the territory",
        "party must purchase all requirements exclusively from the supplier",
        "sole and exclusive right to sell the products",
        "may not appoint any other distributor or reseller",
    ],
    "No-Solicit Of Customers": [
        "non-solicitation of customers",
        "shall not solicit the other party's clients",
        "restriction on contacting or diverting customers",
        "prohibition on poaching customers of the counterparty",
        "not to induce any customer to cease doing business",
    ],
    "No-Solicit Of Employees": [
        "non-solicitation of employees",
        "no hiring of the other party's staff",
        "shall not recruit or employ personnel of the counterparty",
        "restriction on soliciting employees or contractors",
        "agreement not to hire away workers",
    ],
    "Non-Disparagement": [
        "non-disparagement clause",
        "shall not make negative statements about the other party",
        "prohibition on disparaging the company or its products",
        "agree not to criticize or defame the counterparty",
        "no derogatory remarks about the other party",
    ],
    "Termination For Convenience": [
        "termination for convenience without cause",
        "either party may terminate at any time upon written notice",
        "right to end the agreement for any reason",
        "terminate without cause by giving days notice",
        "cancel the contract at will",
    ],
    "Rofr/Rofo/Rofn": [
        "right of first refusal",
        "right of first offer or first negotiation",
        "must first offer the opportunity to the other party before third parties",
        "option to match a third-party offer",
        "first right to negotiate before selling to others",
    ],
    "Change Of Control": [
        "change of control provision",
        "termination upon merger or acquisition of a party",
        "consent required if a party is acquired",
        "what happens when ownership of a party changes",
        "sale of all or substantially all assets or controlling interest",
    ],
    "Anti-Assignment": [
        "assignment requires prior written consent",
        "party may not assign this agreement",
        "restriction on transferring the contract to a third party",
        "no assignment without the other party's approval",
        "any attempted assignment in violation shall be void",
    ],
    "Revenue/Profit Sharing": [
        "revenue sharing arrangement",
        "share of profits paid to the other party",
        "royalties as a percentage of net sales",
        "split of revenues between the parties",
        "commission calculated on gross revenue",
    ],
    "Price Restrictions": [
        "restriction on changing prices",
        "prices may not be increased during the term",
        "limits on price increases",
        "fixed pricing that cannot be raised",
        "party cannot reduce or raise the price without consent",
    ],
    "Minimum Commitment": [
        "minimum purchase commitment",
        "minimum order quantity per year",
        "must buy at least a minimum amount",
        "minimum annual volume requirement",
        "guaranteed minimum purchases or payments",
    ],
    "Volume Restriction": [
        "volume restriction or usage cap",
        "fees increase if usage exceeds a threshold",
        "limit on the number of units or users",
        "consent needed to exceed the licensed volume",
        "maximum quantity that may be ordered",
    ],
    "Ip Ownership Assignment": [
        "intellectual property created becomes property of the company",
        "assignment of inventions and IP rights",
        "work product ownership vests in the customer",
        "party assigns all right title and interest in developments",
        "who owns IP developed under the agreement",
    ],
    "Joint Ip Ownership": [
        "joint ownership of intellectual property",
        "jointly owned inventions",
        "shared IP rights between the parties",
        "co-owned patents developed together",
        "both parties own the intellectual property jointly",
    ],
    "License Grant": [
        "grant of license to use the technology",
        "licensor hereby grants licensee a license",
        "scope of the license granted",
        "right to use the intellectual property",
        "license to make use and sell",
    ],
    "Non-Transferable License": [
        "non-transferable license",
        "license may not be sublicensed or transferred",
        "licensee cannot assign the license",
        "non-sublicensable and non-assignable rights",
        "license is personal to the licensee",
    ],
    "Affiliate License-Licensor": [
        "license including intellectual property of the licensor's affiliates",
        "licensor and its affiliates grant a license",
        "affiliates of licensor license their IP",
        "license covering technology owned by licensor affiliates",
        "grant by licensor on behalf of its affiliates",
    ],
    "Affiliate License-Licensee": [
        "license extends to the licensee's affiliates",
        "affiliates of the licensee may use the licensed rights",
        "licensee and its subsidiaries are licensed",
        "sublicense to affiliates of licensee",
        "licensed use by the licensee's affiliated companies",
    ],
    "Unlimited/All-You-Can-Eat-License": [
        "unlimited usage license",
        "enterprise-wide license with no usage limit",
        "all you can eat license",
        "unlimited number of copies or users",
        "license without restriction on quantity",
    ],
    "Irrevocable Or Perpetual License": [
        "perpetual license",
        "irrevocable license grant",
        "license that cannot be revoked",
        "license continues forever",
        "perpetual irrevocable royalty-free right",
    ],
    "Source Code Escrow": [
        "source code escrow",
        "deposit source code with an escrow agent",
        "release of source code upon bankruptcy",
        "escrow agreement for software source",
        "source code made available if vendor fails",
    ],
    "Post-Termination Services": [
        "obligations after termination of the agreement",
        "transition services after the contract ends",
        "wind-down period following expiration",
        "duties that survive termination",
        "sell-off of remaining inventory after termination",
    ],
    "Audit Rights": [
        "right to audit books and records",
        "inspection of financial records",
        "audit rights to verify compliance",
        "access to accounts for examination by an auditor",
        "party may inspect the other's records",
    ],
    "Uncapped Liability": [
        "uncapped liability",
        "exclusions from the limitation of liability",
        "liability not limited for breach of confidentiality or indemnity",
        "unlimited liability for gross negligence",
        "limitations shall not apply to",
    ],
    "Cap On Liability": [
        "limitation of liability",
        "cap on damages",
        "maximum liability shall not exceed the fees paid",
        "liability limited to the amount paid",
        "in no event shall total liability exceed",
    ],
    "Liquidated Damages": [
        "liquidated damages",
        "termination fee payable",
        "fixed damages amount for breach",
        "penalty payment upon early termination",
        "pre-agreed compensation for breach",
    ],
    "Warranty Duration": [
        "warranty period",
        "duration of the product warranty",
        "warranty against defects for months",
        "how long does the warranty last",
        "warranted free from defects for a period",
    ],
    "Insurance": [
        "insurance requirements",
        "party must maintain liability insurance",
        "insurance coverage amounts",
        "certificate of insurance naming additional insured",
        "maintain general liability and product liability coverage",
    ],
    "Covenant Not To Sue": [
        "covenant not to sue",
        "party agrees not to challenge the validity of IP",
        "shall not contest ownership of the trademarks",
        "release of claims and promise not to bring suit",
        "no challenge to the licensor's patents",
    ],
    "Third Party Beneficiary": [
        "third party beneficiary",
        "no third-party beneficiaries",
        "persons not party to the agreement may enforce it",
        "rights of third parties under this contract",
        "nothing herein confers rights on any other person",
    ],
}


# Contract questions: one query per (train contract, category) that names the contract, so training also
# teaches *which contract* a clause belongs to. Category queries alone have every contract's clause as a
# positive; a model tuned only on them learns to ignore the parties (issue #30: the demo confused contracts
# on cuad-qa in 21% of questions vs the base model's 3%).
_ROLE_WORDS = set("""a b agent agents adviser advisor affiliate association bank borrower buyer client company
consultant contractor customer developer distributor employee employer executive franchisee franchisor
guarantor holder investor landlord lender lessee lessor licensee licensor manufacturer member owner partner
parties party producer provider publisher purchaser recipient reseller seller servicer sponsor supplier
talent tenant trust vendor we us you your our i ii promoter counterparty transporter guarantors
members coverage individual an""".split())
_SUFFIXES = set("""inc inc. incorporated ltd ltd. llc l.l.c. lp l.p. llp corp corp. corporation co co. company
limited plc pty n.a. s.a. gmbh ag bv b.v. sa""".split())
_NAMED = ("this agreement", "the agreement", "this contract", "the contract")


def _tidy_name(name: str) -> str:
    words = [w.strip(" ,.;:") for w in re.sub(r"\s+", " ", name).split(" ")]
    words = [w for w in words if w]
    if words and words[0].lower() == "the":
        words = words[1:]
    while words and words[-1].lower().rstrip(",") in _SUFFIXES | {s.rstrip(".") for s in _SUFFIXES}:
        words = words[:-1]
    words = words[:3]
    out = " ".join(words)
    return out.title() if out.isupper() and len(out) > 4 else out


def party_names(parties: str) -> list[str]:
    """Short names of a contract's parties from CUAD's ``Parties-Answer`` cell, in order.

    A party's own defined term is used when it is a name ("CORIO"), not a role ("Licensor"); otherwise its
    legal name without the corporate suffix. ``'Corio Inc. ("CORIO"); Commerce One, Inc. ("Licensee")'``
    → ``["Corio", "Commerce One"]``.
    """
    names: list[str] = []
    for part in re.split(r";|\n", parties):
        part = part.strip(" ()")
        if not part:
            continue
        legal = re.split(r"[(\"“”]", part, maxsplit=1)[0]
        legal = re.split(r"\s+d/b/a\s+", legal, flags=re.I)[0]
        terms = [t.strip() for t in re.findall(r"[\"“]([^\"”]+)[\"”]", part)]
        term = next((t for t in terms if t and not set(re.findall(r"[a-z]+", t.lower())) <= _ROLE_WORDS), "")
        name = _tidy_name(term) if term and len(term) <= 30 else _tidy_name(legal)
        if name and " and " not in name and not set(re.findall(r"[a-z]+", name.lower())) <= _ROLE_WORDS \
                and name not in names:
            names.append(name)
    return names


def contract_query(category: str, parties: list[str], doc_type: str, key: str, both: bool = False) -> str:
    """A train-phrasing query for `category` that names one contract (variant chosen by hashing `key`;
    `both`: name two parties where there are two, for contracts one party and a type do not tell apart)."""
    h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    phrasing = CATEGORY_QUERIES[category][h % N_TRAIN_PHRASINGS]
    first = doc_type.strip().splitlines()[0] if doc_type.strip() else ""
    doc_type = " ".join(re.sub(r"[^\w\s,&/-]", " ", first).lower().split()[:6])
    doc_type = doc_type if "agreement" in doc_type or "contract" in doc_type else (doc_type + " agreement").strip()
    if len(parties) >= 2 and (both or (h >> 8) % 2):
        named = f"the {doc_type} between {parties[0]} and {parties[1]}"
    else:
        named = f"the {parties[0]} {doc_type}" if parties else f"the {doc_type}"
    for generic in _NAMED:
        if generic in phrasing:
            return phrasing.replace(generic, named, 1)
    return f"{phrasing} in {named}"
