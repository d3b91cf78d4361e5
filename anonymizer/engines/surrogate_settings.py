"""Settings of the surrogate engine: the strength ladder's rungs and every knob of the synthesis, the donor
sets and the group self-check (surrogate.py, surrogate_ladder.py, surrogate_synthesis.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Strength:
    texture: float  # texture caricature gain (1 = plain donor average)
    shape: float  # shape caricature gain
    jaw: float  # how far the outline moves to the donors' (0 = patient's outline; the face must fit the head)
    push: float = 0.0  # overshoot of the free landmarks past the donor shape, away from the patient's
    anti: float = 0.0  # anti-face gain: texture moved by anti × (demographic mean − patient's own texture)
    soft: float = 0.0  # this rung's soft limit of the texture around the donor average (0 = soft_limit)


@dataclass(frozen=True)
class SurrogateSettings:
    donor_bank: Path | None = None
    k: int = 9  # donors mixed per synthetic identity (at most)
    k_min: int = 6  # fewest donors (surrogate_donors.choose_donors)
    shape_weight: float = 1.0  # inner landmarks: 1 = donors' shape, 0 = patient's shape
    expression_follow: float = 0.6  # free mouth / eyes: share of the patient's own shape about their centre
    # the target's coordinates along the bank's k main expression directions follow the patient's
    # (surrogate_shape.py); 0 = off
    expression_modes: int = 2
    # A patient whose inner lips are at least this far apart (÷ inter-ocular distance; donors.expression's
    # opening) gets the synthetic mouth's interior from the donor photo of the set whose mouth is the most
    # open (surrogate_mouth.py; 0 = off): the bank's reference shape squashes every donor's teeth into a slit
    # a few pixels high, the mix averages them with closed lips, and the warp out to a smile stretched that
    # into a pink blob with no teeth (008_08, eyes kept).
    mouth_interior: float = 0.0
    # The synthetic inner lips no farther apart than the patient's plus this much (× inter-ocular distance;
    # surrogate_mouth.cap_opening; negative = off): the expression transfer above opened 008's closed
    # neutral mouth 20 px and his smile 32 px against his 12 (eyes kept; nothing and nose kept alike).
    mouth_opening: float = -1.0
    # The free mouth no wider than the patient's plus this much (× inter-ocular distance; surrogate_mouth.
    # cap_width; negative = off): the transfer also widens it past the patient's (008: 144 against 124 px).
    mouth_width: float = -1.0
    keep_frame: bool = True  # free points keep the patient's centroid and spread (face place and size)
    # True: the jaw line stays the patient's on every rung but the overshoot ones (those move the outline on
    # purpose, for a kept nose or eyes). dlib's HOG box then stayed on 20 instead of 16 of 28 held-out
    # photos with nothing kept (IoU 0.877 -> 0.924), but the outline is identity: two patients sharing every
    # donor came out 0.53 apart instead of > 0.6 (tests/faces/test_surrogate_identity.py). Off.
    keep_outline: bool = False
    # The settings (by kept region, as inner_fit below) whose target outline (jaw and brows) takes the
    # patient's centroid and RMS spread on every rung but the overshoot ones (surrogate_shape.
    # keep_outline_frame): the outline keeps the donors' shape, only its extent and place are the patient's,
    # for dlib's HOG box. Off (docs/face-engine.md, issue-11b12).
    outline_frame: str = ""
    # With the eyes kept, no jaw point of the target lies more than this far (× inter-ocular distance)
    # inside the patient's outline (surrogate_target.outline_floor; negative = off). A narrower synthetic
    # outline left the patient's own cheek around the synthetic face: a brown contour on the cheeks and a
    # vertical edge at both jaw sides (London-set 001). With the nose kept it cost 001 its passing rung (no
    # donor set passed, outputs matched donors), so the nose keeps the narrower outline for now.
    outline_floor: float = 0.0
    # the floor with nothing or the mouth kept too (001 shows the same contour there). Off: on eval_pixels
    # --subset 4 it took nothing-kept linkage r5 6.2 -> 18.8 %, sex kept 100 -> 93.8 %, dlib IoU 0.950 ->
    # 0.938, and mouth-kept sex kept 93.8 -> 87.5 %, IoU 0.937 -> 0.931 (smile kept 81.2 -> 93.8 %)
    outline_floor_free: bool = False
    # The settings (by kept region: "nothing", "mouth", "nose", "eyes"; comma-separated) whose donor shape is
    # similarity-fitted to the patient on its inner features (brows, eyes, nose, mouth) instead of all 68
    # points (surrogate_target.FIT_INNER): there a wide caricatured outline no longer shrinks the inner face.
    # Off: with the eyes kept (draw A) dlib IoU 0.900 -> 0.925 but linkage r5 6.2 -> 37.5 %, sex kept 87.5 ->
    # 75 %; with the nose kept 4 of 16 photos lost (docs/face-engine.md, issue-11k).
    inner_fit: str = ""
    # The settings (named as above) whose synthetic brows are made as much darker than the skin around them
    # as the patient's are (surrogate_brows.py): a donor average's brows are a faint smear, and dlib's HOG
    # box then takes the eye line for the face's top edge. Off: alone, eyes kept, IoU stayed 0.900 (sex kept
    # 87.5 -> 81.2 %, smile 100 -> 75 %, draw B collisions 0 -> 1.8 %); nose kept lost 3 photos; nothing kept
    # IoU 0.950 -> 0.931; with inner_fit (eyes) IoU 0.943 but a photo lost on draw B (docs/face-engine.md).
    brow_contrast: str = ""
    # the brows' contrast only in the finish (surrogate_ladder._finished: on the rung the ladder chose, kept
    # when the group's self-check still passes), so it does not change which rung or donor set is chosen.
    # Off: where the brows set the box (004, eyes kept) the deeper brows fail that check and are dropped.
    brow_finish: bool = False
    # Share of the way each synthetic brow moves back to the patient's height above its eye (surrogate_target.
    # keep_brow_height; 0 = off): the brows' shape, length and place across the face stay the donors'. The
    # 68-point fit brings the brows down onto the eyes (above), and the brow bar is what dlib's HOG box takes
    # for the face's top edge.
    brow_height: float = 0.0
    # Each synthetic eye at least this share as open as the patient's (surrogate_target.keep_eye_opening;
    # 0 = off): a narrower eye's lids move apart across the corner line, the corners (the eye's place,
    # width and tilt) stay. How open the eyes are is expression; the shape caricature of the strong rungs
    # (×2.8-3) narrowed some eyes to slits that read as dark, heavy sockets (London-set 008, mouth kept).
    eye_opening: float = 0.0
    # the eyes opened only in the finish (surrogate_ladder._finished: on the rung the ladder chose, kept when
    # the group's self-check is no worse), so the choice of rung and donor set stays the one made without:
    # opened on every rung, draw B's 019 and 030 (mouth kept) came out one person (0.53-0.59)
    eye_finish: bool = False
    # Skin detail: an average of k faces has no pores; the band finer than ``detail_sigma`` (× inter-ocular
    # distance) comes from ONE consented donor instead (the group's first donor, in shape-free space), never
    # from the patient (moles and scars identify people).
    detail: float = 1.0
    detail_sigma: float = 0.025
    sharpen: float = 0.0  # unsharp-mask amount on the averaged texture (before the donor's detail)
    age_tolerance: float = 15.0
    max_std_ratio: float = 1.2  # colour transfer limits (larger ratios blacken eyes and brows)
    # The colour finish, made once on the rung the ladder chose and kept only if the group's self-check
    # still passes (surrogate_ladder._finished), so it does not change which rung or donor set is chosen:
    # - highlight_chroma: share of the skin's chroma a tamed highlight takes back (surrogate_colour.
    #   tame_highlights; 0 = off): a donor mix's colourless flash, only darkened, stays a grey-white patch;
    # - lid_colour: the skin around each synthetic eye no redder (a*) than the patient's (match_lids): fair
    #   donors' pink lids came out red-brown on a dark-skinned patient (008, nose kept).
    # Off: on eval_pixels --subset 4 (1.0 / on, the finish also kept on groups that did not pass) 013 with
    # the mouth kept lost a photo to verification (output-links-to-input 0.713; that group passed no rung)
    # and nothing-kept linkage rank 5 rose 6.2 -> 12.5 % (one photo); docs/face-engine.md, issue 11z.
    highlight_chroma: float = 0.0
    lid_colour: bool = False
    soft_limit: float = 28.0  # texture moved from the donor average by at most ~this lightness (0 = no limit)
    # Anti-averaging: an average of k faces sits near the centre of its demographic, where it resembles
    # everyone (patient and donors alike). Each rung caricatures it further from that centre; the first rung
    # whose faces all pass the self-check is used for the whole group (so pairs stay consistent).
    # The anti-face term adds the patient's deviation from the demographic mean with the sign flipped: that
    # direction lies outside the span of the donors, so it moves the face away from the patient AND from every
    # donor, which a mix of real donors alone cannot do (their average stays about as close to each of them
    # as two relatives).
    # The first rung rarely passes the self-check (in none of 134 donor sets of 32 traced groups before the
    # keyed spread) and costs 16 % of all rungs; it was dropped for speed, then restored: with the spread
    # on, dropping it lost a nose-kept photo of eval_pixels --subset 4 (93.8 % forwarded, linkage r1 6.2 % /
    # r5 50 %, collisions 7.1 %, against 100 %, 0 / 37.5 % and 5.4 % with it; paired runs, same code else).
    ladder: tuple[Strength, ...] = (
        Strength(1.15, 1.6, 0.35, 0.0, 0.5),
        Strength(1.35, 2.2, 0.6, 0.0, 0.8),
        Strength(1.6, 2.8, 0.85, 0.0, 1.1),
        Strength(1.7, 3.0, 1.0, 0.0, 1.4),
        # Overshoot rungs, tried only while some face still matches the PATIENT (a preserved region carries
        # identity, so the rest of the face must change more); a donor match alone does not reach them.
        Strength(1.8, 3.0, 1.0, 0.5, 1.8),
        Strength(1.9, 3.0, 1.0, 0.8, 2.4),
        # When a region is kept (nose, eyes) the rest must carry the whole change: wider overshoot of outline,
        # brows and eye spacing, and a stronger anti-face. Reached only by faces still near or linked to the
        # patient, and so rarely with nothing kept.
        Strength(2.0, 3.2, 1.0, 1.1, 3.0),
        Strength(2.1, 3.4, 1.0, 1.4, 3.6),
    )
    # Who computes the self-check's descriptors (one per output and rung): "torch" = dlib's ResNet ported to
    # torch (faces.descriptor_torch; equal to dlib's within ~1e-6 on London-set chips, ~0.01 s per chip
    # on one thread against dlib-bin's 0.063 s without a BLAS), "dlib" = dlib itself. Verification has its
    # own choice (faces.verify.VerifySettings.descriptor).
    self_check_descriptor: str = "torch"
    self_check_distance: float = 0.68
    self_check_donor_distance: float = 0.63
    # One patient, one person: a rung passes only when every two outputs of the group are at most this far
    # apart (dlib; the bench counts a pair under 0.6 as consistent). An anchored set made 013's neutral and
    # smiling photo 0.61 apart with the mouth kept (the kept smile plus a far donor's face); 0 = no check.
    self_check_pair_distance: float = 0.55
    # Sex kept: a rung passes only when every output is of the patient's sex by the donors' sex centroids
    # (surrogate_donors.apparent_sex); the spread and the anti-face point away from the patient, and for
    # London-set patient 003 (eyes kept) that was towards a man's face.
    self_check_sex: bool = True
    self_check_sex_margin: float = 0.0  # an output this near the centroids' midpoint counts as not kept
    # How the engine reads sex from a descriptor (the patient's estimate when the header has no PatientSex,
    # and the self-check above): "centroids" = the donors' sex centroids (surrogate_donors.apparent_sex);
    # "probe" = a ridge probe on the bank's descriptors and self-reported sex (surrogate_sex.py), fitted on
    # the bank alone. On the London set the probe called 100 % of 78 non-bank originals per fold right, the
    # centroids 98.7 / 97.4 %. "both" (issue-11n5; the self-check only, the patient's estimate is the
    # centroids'): the centroids' reading where the probe agrees, else one that keeps no patient's sex.
    sex_reader: str = "probe"  # on (issue-11s; with the nose or eyes kept "centroids", see region_kept)
    sex_probe_margin: float = 0.3  # with "probe": an output with |score| under this counts as not kept
    # Who estimates the patient's own sex when the header has no PatientSex: "" = the reader above ("probe":
    # the probe; else the donors' centroids), "probe" = the bank's probe whatever the self-check reads. The
    # estimate picks the donors' sex, so a wrong one makes every donor set the other sex and no sex guard
    # can see it (the self-check compares outputs with the estimate). With the eyes kept (centroids) the
    # London set's 067, a man, was estimated a woman, mixed from women and read as a woman on both photos;
    # the probe calls all 39 patients' self-reported sex right (leave-one-out; the centroids 38).
    sex_estimate: str = ""
    # Linkage: a rung is good enough only when at least this many real faces of the bank are nearer to the
    # output than the patient is; verification demands 1 (fail-closed), the engine aims higher so that a
    # linkage attacker's top guesses are other people.
    population_rank: int = 3
    # Uneven donor mix (Dirichlet concentration; 0 = plain mean). 0.4 cut collisions between patients from
    # 12 % to 3 % on the London Set but let one donor dominate: 65 % of outputs then matched a donor. Off.
    donor_spread: float = 0.0
    # donor sets tried, in keyed order, before the best one is left to verification (each keys its own
    # identity mix: 3 -> 6 took the kept nose's yield 65 -> 85 % on 10 London-set identities)
    donor_sets: int = 6
    # A set whose outputs matched the same donor(s) on this many rungs in a row is given up for the next set
    # (0 = climb every rung). In the traces of 32 London-set groups (eval_pixels --subset 4 --trace, every
    # setting) 49 sets did so and 1 of them passed later; their remaining rungs were 11 % of all rungs. At 3
    # (with the shorter ladder) the same run tried 657 rungs instead of 848, but a group whose every set
    # fails keeps the best rung of any set, and giving sets up removed it: 013 with the mouth kept lost a
    # photo to verification (0.632), collisions rose 5.4 -> 8.9 % (nothing kept) and 2.7 -> 6.2 % (nose).
    # Off.
    stuck_donor_rungs: int = 0
    # a re-drawn set after one that stayed near its patient leans on one far donor (surrogate_identity.py)
    anchored_redraws: bool = True
    # The donor a re-drawn set leans on is one whose mean skin tone lies within this many degrees ITA of the
    # patient's (0 = any donor; none within: any). In the last donor tiers (any tone) the far donors that
    # anchor a set are often of another skin tone, and a mix 0.8 one donor keeps that face's shading after
    # the colour match: London-set 001 (a light-skinned woman, eyes kept) came out dark and blotchy with an
    # upper-lip shadow, leaning on a darker donor (ITA -13 against her 46). Off: with the eyes kept (45°,
    # alone or with 10 donor sets) 001 is no longer dark, but her output is blotchy (a red cheek) and still
    # collides with 013 (draw A 4.5 %); docs/face-engine.md, issue-11e5.
    anchor_tone: float = 0.0
    # Keyed synthetic identity (surrogate_identity.py): the donors' deviations from the peers' centre mixed
    # with a keyed unit vector, scaled to this share of one real person's deviation (0 = the convex mix
    # above). Texture and shape separately: the shape ladder's caricature multiplies the shape's. Texture
    # 0.8 cut pairs of different patients' outputs under 0.6 from 7.6 to 3.0 % (12 London-set patients,
    # neutral photos, first rung only) but brought the two seeds of tests/faces/test_surrogate_identity.py
    # to 0.59 (0.4: 0.65); left at 0.4 until the full bench decides (docs/face-engine.md).
    typicality: float = 0.4
    shape_typicality: float = 0.6
    identity_clip: float = 8.0  # soft limit of the texture's lightness change, L* units (0 = none)
    # Keyed spread (surrogate_spread.py): each patient's identity moves by this share of one real person's
    # deviation along a keyed direction of the bank's whole face space (shape and texture; 0 = off), so
    # patients who share their donors still become different people. Shape 2 took collisions between
    # different patients' outputs on eval_pixels --subset 4 from 5.4 / 6.2 / 2.7 / 12.5 % (nothing / mouth /
    # nose / eyes kept) to 3.6 / 0.9 / 5.4 / 4.5 % (docs/face-engine.md); a texture spread (5) flipped the sex
    # probe's call on two London-set women, so it is off.
    spread_shape: float = 2.0
    spread_texture: float = 0.0
    # Outward step (issue-11c7; 1 = off): the donor mix's deviation from the patient's peers' centre (their
    # sex and tone), after the keyed identity mix and before the keyed spread, × this. A mix of k donors
    # lies about 1/√k as far from that centre as one real face, and outputs sat 0.56 from their sex's mean
    # descriptor against real faces' 0.59 (issue-11c6): every pair of patients' mixes moves apart by the
    # same factor. Texture above the pore scale (surrogate_texture.outward) and landmarks.
    outward_texture: float = 1.0
    outward_shape: float = 1.0
    spread_texture_clip: float = 14.0  # the texture step's soft limit, 8-bit levels (surrogate_spread.CLIP)
    spread_anchored: float = 1.0  # share of the spread kept on re-drawn sets that lean on one far donor
    spread_away: bool = True  # the shape step's signs point away from the patient's place in that space
    # How far off the bank's mean (in σ of each direction) the patient must lie along a direction for
    # ``spread_away`` to set the step's sign there; elsewhere the key sets it. At 0.5 the patient decides
    # ~60 % of the 12 signs, so two patients of one demographic who lie on the same side of the mean get
    # nearly the same step (surrogate_spread._away).
    spread_away_min: float = 0.5
    # the spread's steps lose their component along ridge sex probes of the bank's shapes and textures
    # (surrogate_spread.sex_direction), so they cannot carry a face across those boundaries
    spread_sex_guard: bool = True
    # once a donor set's best rung reads as the other sex (the self-check's reading), later sets use the
    # texture step × this (1 = unchanged): a patient whose face the step carries across keeps their sex
    spread_texture_after_sex_miss: float = 1.0
    # Further keyed shape steps of the patient (0 = off), each tried on a rung whose outputs read as the
    # other sex (after the sex rescue below): of the remade rungs that keep the sex, the best in the
    # self-check replaces the rung, and its step the group's for the rest of the donor set. The shape step
    # is what carried London-set 013 (a woman, mouth kept) to the men, and without it she became a donor
    # look-alike (issue-11nm); the step's guard removes only the bank's landmark sex direction, not what a
    # descriptor reads on the synthetic face.
    spread_shape_variants: int = 0
    # A further shape step replaces a rung only when its outputs are likely to verify (the self-check's
    # "verifiable": > 0.66 from the patient with a real face nearer; False = any step that keeps the sex).
    # With the nose kept, 002's only rungs far enough to verify read as a man; a step that kept her a woman
    # near her became the step of her donor set's later rungs and her photo was lost to verification (0.614).
    spread_variants_verifiable: bool = False
    # the anti-face terms lose their component along the bank's texture sex direction (the spread's guard,
    # surrogate_synthesis._sexless): flipped, a feminine patient's deviation points at men
    anti_sex_guard: bool = True
    # Identity between patients (issue-11s). The texture step of the keyed spread takes the opposite sign
    # along every direction where the patient lies clearly off the mean, as the shape's does (spread_away):
    # a random texture step took collisions with nothing or the mouth kept to 0 % but raised linkage rank 5
    # (face-engine.md, c1). Pointed away it turned 003 into a man without the sex guard (spread_sex_guard).
    spread_texture_away: bool = False
    # Per-rung sex guard: a rung whose outputs read as the other sex (the self-check's reading) is made
    # again with the anti-face terms (the patient's and the repelled donors') × this, and the remade rung
    # is judged in its place when it keeps the sex (1 = off). The anti-face is the patient's deviation
    # flipped: for a feminine patient it points at men.
    sex_miss_anti: float = 0.5
    # Distinct patients: a donor mix is pulled towards the demographic centre, so patients sharing donors
    # came out one person (draw B, 022 and 033: outputs 0.49-0.54 from the bank's men's mean descriptor,
    # 0.52-0.55 apart; held-out real faces lie 0.52-0.65 from it, mean 0.59). A rung passes only when every
    # output lies at least this far (dlib) from the bank's mean descriptor of the patient's sex (0 = off).
    # Off: on eval_pixels --privacy-only (with the levers below on) 0.55 gave collisions nothing 0.0 · 3.6 %,
    # mouth 0.0 · 1.8 % (draw A · B) with 1.4x the rungs of off, 0.5 gave 0.9 · 3.6 and 0.0 · 0.0 %; off
    # gives 2.7 · 0.9 and 0.0 · 0.0 % (022 and 033 of draw B land together when the check pushes them on).
    self_check_centre_distance: float = 0.0
    # The identity levers above act with nothing or the mouth kept; with the nose or the eyes kept the
    # engine uses these values instead (the kept region carries identity, and there yield and linkage come
    # first: on eval_pixels draw A the texture spread lost 3 of 16 nose-kept photos). Each NAME, VALUE pair
    # replaces that setting; () = the same settings in every case.
    # On by default (issue-11s): the probe with its margin, both sex guards and the sex rescue, with nothing
    # or the mouth kept; with the nose or eyes kept the values before (those outputs are bit-identical to
    # main's, bench/pixel_hashes.py). eval_pixels --privacy-only, draw A · draw B, main -> on: collisions
    # nothing 3.6 -> 2.7 · 8.9 -> 0.9 %, mouth 0.9 -> 0.0 · 2.7 -> 0.0 %; rank 5 nothing 6.2 -> 18.8 ·
    # 6.2 -> 0.0 %, mouth 25.0 -> 6.2 · 31.2 -> 25.0 %; sex kept nothing 100 · 81.2 -> 93.8 % (100 % by
    # self-report), mouth 93.8 -> 87.5 (013's second photo) · 93.8 %. Rungs tried: 90 -> 139 on draw B
    # with nothing kept, 82 -> 90 and 93 -> 109 on draw A (docs/face-engine.md, issue-11s).
    region_kept: tuple[tuple[str, object], ...] = (
        ("sex_reader", "centroids"),
        ("sex_probe_margin", 0.0),
        ("spread_sex_guard", False),
        ("anti_sex_guard", False),
        ("sex_miss_anti", 1.0),
        ("self_check_centre_distance", 0.0),
    )
    # Applied after ``region_kept``, only with the nose (``nose_kept``) or the eyes (``eyes_kept``) kept, so
    # that work on one kept region leaves the other settings' outputs bit-identical.
    # Nose kept (issue-11n4): no beard shadow on light-skinned women (``anti_beard`` 0). eval_pixels
    # --settings nose --privacy-only, draw A · draw B, main -> on: forwarded 100 · 93.8 kept, linkage r5
    # 37.5 -> 43.8 · 62.5 % (001's smiling photo rank 6 -> 5), collisions 5.4 -> 4.5 · 8.9 %, donor leak
    # 12.5 · 31.2 -> 25.0 %, sex kept 87.5 · 87.5 % (002 still reads male); draw A full: dlib box 0.950
    # kept, smile 87.5 -> 93.8 %.
    # Nose kept (issue-11n9, on by the lead): ``shape_bound`` 1, a second pass for a group no donor set
    # passes, with folded targets bounded to the bank's faces. eval_pixels --folds 39 --settings nose
    # --privacy-only, main -> on: forwarded 76.9 -> 87.2 %, r1 / r5 14.1 / 65.4 -> 7.7 / 53.8 %, collisions
    # 6.3 -> 3.8 %, sex kept 89.7 -> 91.0 %; de-ID 98.7 -> 97.4 % (067's two outputs, now quarantined,
    # fail-closed, where main forwarded them), donor leak 16.7 -> 25.6 % (floor 26.9 %).
    # Nose kept (issue-11n10): ``verified_pick`` 1: in that second pass's groups the ladder's pick is kept
    # unless verification's own check fails it on the crop, then the next set result that passes it with
    # 0.02 to spare. 24 groups rerun (all that reach the second pass) joined with main, --folds 39, main ->
    # on: forwarded 87.2 -> 89.7 %, de-ID 97.4 -> 100 %, r1 / r5 7.7 / 53.8 -> 5.1 / 53.8 %, sex kept 91.0 %
    # kept; collisions 3.8 -> 4.0 %, donor leak 25.6 -> 28.2 % (067's outputs, forwarded again as before
    # shape_bound, lie 0.53-0.57 from bank face 135). 22 of the 24 groups' outputs stay main's to the bit.
    # Nose kept (issue-11s11): the patient's sex estimated by the bank's probe (``sex_estimate``, as with the
    # eyes kept; the self-check still reads by the centroids). The centroids estimated London-set 067, a man,
    # a woman (-0.155; the probe +0.125), so his donors were women and both outputs read as a woman. The two
    # estimates differ for 067 alone of the 39 (leave-one-out), so only his outputs change: --folds 39
    # --settings nose --ids 067 joined with main, main -> on: sex kept 91.0 -> 93.6 %, r5 53.8 -> 51.3 %,
    # same-sex r1 / r5 7.7 / 66.7 -> 5.1 / 64.1 %, donor leak 28.2 -> 25.6 %, forwarded 89.7 %, de-ID 100 %,
    # r1 5.1 % and collisions 4.0 % kept (067 passes at his first set's second rung: 0.702 / 0.711).
    nose_kept: tuple[tuple[str, object], ...] = (
        ("anti_beard", 0.0),
        ("shape_bound", 1.0),
        ("verified_pick", 1),
        ("sex_estimate", "probe"),
    )
    # Eyes kept (issue-11ek): the linkage aim 5 instead of 3 (the bank is about half an attacker's gallery,
    # so 3 left the patient 5th or nearer in 31.2 % of draw B's outputs). eval_pixels --settings eyes
    # --privacy-only, draw A · draw B, main -> on: linkage r1 0 · 6.2 -> 0 · 0 %, r5 6.2 · 31.2 -> 6.2 ·
    # 18.8 %, collisions 4.5 · 0 -> 4.5 · 0.9 %, sex kept 87.5 · 93.8 -> 100 · 93.8 % (draw B's miss is the
    # bench's probe misreading 024's neutral original); dlib box (draw A, full run) 0.900 kept.
    # Off: 10 donor sets instead of 6 (11ek's first choice: draw A collisions 4.5 -> 0.9 %, 001's fallback
    # no longer lands on 013's). The lead took it out at the merge: on the contact sheets the outputs it
    # changed (001, a light-skinned woman, and 027 on draw B) came out far darker than the patient, blotchy,
    # with a white patch on the forehead; also box 0.900 -> 0.881 and rungs 136 · 72 -> 209 · 270
    # (docs/face-engine.md, issue-11ek and the lead's note there).
    # The smile (issue-11e3): the expression transfer opened the free mouth far beyond the patient's (008:
    # 20 px on a closed neutral mouth, 32 against 12 px on his smile) and widened it (144 against 124 px),
    # and the shape-free texture has only a slit there, so smiles became a pink blob without teeth.
    # mouth_opening 0.02 and mouth_width 0.02 cap the free mouth at the patient's opening and width,
    # mouth_interior 0.06 takes an open mouth's teeth from the set's most open donor photo
    # (surrogate_mouth.py). eval_pixels --settings eyes --privacy-only, draw A · B, main -> on: linkage r5
    # 6.2 · 18.8 -> 12.5 · 25.0 % (001_08 and 029_03 from 6th to 5th), collisions 4.5 · 0.9 -> 4.5 · 0 %,
    # sex kept 100 · 93.8 % as before; full draw-A run: smile kept 100 -> 87.5 % (013_03 reads as smiling,
    # 017_08 as neutral), dlib box 0.900 (docs/face-engine.md, issue-11e3).
    # Sex kept (issue-11e6), on the whole set leave-one-out (eval_pixels --folds 39 --settings eyes
    # --privacy-only), main -> on: sex kept 93.6 -> 98.7 % (the one miss left is the bench's probe misreading
    # 024's neutral original), forwarded 100 % kept, linkage r1 0 kept, r5 24.4 -> 21.8 %, collisions 1.9 ->
    # 2.0 %, self-check judgements 812 -> 856. Two levers, each changing only the patients it names:
    # - the patient's sex estimated by the bank's probe (``sex_estimate``; the self-check still reads by
    #   the centroids): the centroids estimated 067, a man, a woman, so every donor set was of women and both
    #   outputs read as a woman (no guard can see that: the self-check compares outputs with the estimate).
    #   The two estimates differ for 067 alone of the 39, leave-one-out and leave-half-out;
    # - 4 further keyed shape steps for a rung read as the other sex (mouth_kept's, issue-11m3): 083 (a
    #   woman) read as a man on 44 of 48 rungs; it changes only groups with such a rung (038, 083, 087).
    eyes_kept: tuple[tuple[str, object], ...] = (
        ("population_rank", 5),
        ("mouth_opening", 0.02),
        ("mouth_width", 0.02),
        ("mouth_interior", 0.06),
        ("sex_estimate", "probe"),
        ("spread_shape_variants", 4),
        ("shave", 1.0),
    )
    # Applied with nothing kept (``nothing_kept``) or with the mouth alone kept (``mouth_kept``; with the
    # nose or eyes kept too, their values alone), so that work on one setting leaves the others' outputs
    # bit-identical; () = the base values.
    # Nothing kept (issue-11z3): the keyed texture spread at one person's deviation, soft-clipped to 7
    # levels, and dropped for the later donor sets of a patient whose outputs read as the other sex. Draw
    # A's colliding pairs (004 / 017, two men of one fold) share 6 of 7 donors (the tier's whole pool of
    # their sex and tone); the texture step alone (11nm) cleared draw A but turned draw B's 019 (a woman)
    # towards the men, and at its full 14 levels it left uneven light and dark patches (004, 025).
    # eval_pixels --settings nothing --privacy-only, draw A · draw B, main -> on: collisions 2.7 · 0.9 ->
    # 0.9 · 0.0 %, linkage r5 18.8 · 0.0 -> 12.5 · 18.8 %, sex kept 100 · 93.8 % kept, donor leak 0 ·
    # 12.5 -> 0 · 6.2 %, rungs 90 · 139 -> 90 · 137 (docs/face-engine.md, issue-11z3).
    # Off: 11e3's mouth caps and teeth (mouth_opening / mouth_width 0.02, mouth_interior 0.06; issue-11zm).
    # They put teeth in 008's and 022's smiles, but 013 (a woman) read as a man (sex kept, draw A, 100 ->
    # 87.5 %) and 001, 019 and 027 (women, donors of any tone) came out darker and blotchy on the sheets.
    # Sex kept (issue-11e6): 4 further keyed shape steps for a rung read as the other sex (mouth_kept's,
    # issue-11m3). 013 (a woman, tier 1, donors all women) read as a man on 51 of 53 rungs, and the sex
    # rescue (anti-face x 0.5, or x 0) did not bring her back. It changes only groups with such a rung (9 of
    # 39). eval_pixels --folds 39 --settings nothing --privacy-only, main -> on: sex kept 96.2 -> 98.7 % (the
    # miss left: the bench's probe misreading 024's neutral original), forwarded 100 % kept, r1 0 kept, r5
    # 12.8 -> 10.3 %, collisions 3.0 -> 2.6 %, self-check judgements 473 -> 427 (docs/face-engine.md).
    nothing_kept: tuple[tuple[str, object], ...] = (
        ("spread_texture", 1.0),
        ("spread_texture_after_sex_miss", 0.0),
        ("spread_texture_clip", 7.0),
        ("spread_shape_variants", 4),
        ("shave", 1.0),
        ("preview_rungs", "half"),
    )
    # Mouth kept (issue-11m3): in the finish, the eyes at least 0.85 × as open as the patient's (the
    # caricature of the strong rungs narrowed them to dark slits), and 4 further keyed shape steps for a rung
    # read as the other sex (London-set 013, a woman, read as a man). eval_pixels --settings mouth, draw A ·
    # draw B, main -> on: sex kept 87.5 · 93.8 -> 100 · 93.8 % (B: the bench's probe misreading 024), r5
    # 6.2 · 25.0 -> 18.8 · 12.5 % (A: 013 keeps her sex nearer to herself), collisions 0 · 0 kept, dlib box
    # (A) 0.949 -> 0.950. The eyes opened on every rung (not only in the finish) made 008 lighter and
    # open-eyed but put draw B's 019 and 030 together (collisions 3.6 %); docs/face-engine.md, issue-11m3.
    # The linkage aim 5 (issue-11m7, ``mouth_population_rank``): leave-one-out, the bank is the attacker's
    # gallery less the patient, so a rung passing the general aim (3 real faces nearer) left the patient
    # 4th or 5th; 20 of the 26 mouth-kept outputs at rank <= 5 were such passes. eval_pixels --folds 39
    # --settings mouth --privacy-only, main -> on: r5 33.3 -> 15.4 % (same sex 38.5 -> 17.9 %), collisions
    # 2.4 -> 1.8 %, forwarded 98.7 % and sex kept 98.7 % kept, r1 0 kept, donor leak 5.1 -> 9.0 % (floor
    # 26.9 %), rungs 572 -> 713 (docs/face-engine.md, issue-11m7).
    mouth_kept: tuple[tuple[str, object], ...] = (
        ("eye_opening", 0.85),
        ("eye_finish", True),
        ("spread_shape_variants", 4),
        ("mouth_population_rank", 5),
        ("mouth_donor_sets", 12),
        ("shave", 1.0),
        ("preview_rungs", "half"),
    )
    # Yield with a region kept (issue-11w). Verification fails a photo whose output matches ANY original of
    # its group ("output-matches-patient-photo"), but the self-check measured each output against its own
    # photo only: on draw B (eval_pixels --ids 022 025 029 033 019 024 027 030) 029 (eyes kept) and 030
    # (nose kept) lost a photo that way. On: a rung's distance to the patient is the nearest of the group's
    # originals. On by default (the lead): it makes the self-check ask what verification asks; paired
    # privacy-only runs gained draw B's eyes-kept photo (93.8 -> 100 %) and changed one other output
    # (draw A, 008 nose kept, farther from its patient: 0.752 -> 0.810), which added one colliding pair
    # (6 -> 7 of 112).
    self_check_group_photos: bool = True
    # When no rung of any set passes, the best attempt goes to verification (fail-closed, it may still
    # forward). Its rank ignored donor matches, and the rungs farthest from a kept-nose patient were often
    # one donor's look-alike (an anchored set: the donor counts as a real face nearer than the patient), so
    # draw B's nose-kept outputs matched a donor in 50 % of photos. On: among attempts equally likely to
    # verify (self-check: > 0.66 from the patient, a real face nearer) and keeping the sex, one that matches
    # no donor ranks first.
    best_avoids_donors: bool = False
    # The self-check reads the output on the engine's crop, verification on the pasted photo: dlib distances
    # move by ~0.01 between the two, and by 0.02 for draw B's 022 (eyes kept), whose group passed the
    # self-check with 4 real faces nearer than the patient and failed verification with none
    # (output-links-to-input 0.669). A real face counts as nearer in the self-check only when nearer by at
    # least this much (0 = as verification counts).
    self_check_rank_slack: float = 0.0
    # The failing attempt given to verification: one farther from the patient than verification's distance
    # (0.65) ranks before one with more real faces nearer but within it, which fails for sure (draw B's 030,
    # nose kept: its fallback was a donor look-alike 0.643 from the patient).
    best_over_threshold: bool = False
    # Kept nose (issue-11n; each reached only with the nose kept). With the nose kept, the eyes, brows and
    # mouth carry the identity that is left: on draw B's 025 (verification's 0.641), putting the output's
    # brows or eyes into her original moved it 0.40 from her, the mouth 0.25, the outline, cheeks or
    # forehead 0.11-0.14. The anti-face that would change them (up to 3.6 x 18 levels on the top rung) was
    # held to ``soft_limit`` (28) levels of the donor average, so no rung of any set got her past 0.65.
    # Rungs appended to the ladder with the nose kept, tried like the overshoot rungs only while some face
    # still matches the patient; their ``soft`` lets the anti-face through. As the limit of every rung (45)
    # it took 025 and 030 past verification but lost 003 (draw A; 0.655 -> 0.635 from her): appended, the
    # ladder's own rungs are tried first and stay candidates.
    # On (eval_pixels --settings nose --privacy-only, draw A / draw B): forwarded 100 / 81.2 -> 100 / 93.8 %
    # (025 passes), linkage r1 0 / 6.2 -> 0 / 0 %, r5 37.5 / 68.8 -> 37.5 / 62.5 %, donor leak 12.5 / 50 ->
    # 12.5 / 31.2 %; smile kept (draw A) 93.8 -> 87.5 %, dlib box IoU 0.931 -> 0.950 (face-engine.md, 11n).
    nose_rungs: tuple[Strength, ...] = (
        Strength(2.0, 3.2, 1.0, 1.1, 3.0, 45.0),
        Strength(2.1, 3.4, 1.0, 1.4, 3.6, 45.0),
    )
    # The linkage aim (``population_rank``) with the nose kept, never below it (0 = population_rank; the
    # test off stays off): real faces of the bank that must lie nearer to every output than the patient.
    # The bank is about half an attacker's gallery, so 3 left the patient 5th or nearer in 37.5 / 68.8 % of
    # nose-kept outputs (draw A / B). Off: 5 (with nose_rungs) took draw B's r5 62.5 -> 50 %, but the
    # ladder then searched on past passing rungs to donor look-alikes: donor leak 12.5 -> 25 % (A) and
    # 31.2 -> 37.5 % (B), dlib box IoU 0.950 -> 0.912 (A); draw A's r5 stayed 37.5 %.
    nose_population_rank: int = 0
    # The linkage aim with the mouth kept and not the nose, never below ``population_rank`` (0 =
    # population_rank; the test off stays off). Set through ``mouth_kept`` (issue-11m7), not as an override
    # of population_rank there, so that a rule file's aim (pixel_stage: raised, or 0) still reaches it.
    mouth_population_rank: int = 0
    # donor sets tried with the nose kept (0 = donor_sets; never fewer): with a higher linkage aim fewer
    # sets pass, and each further set is another keyed identity to try. Off: 10 sets left 025's
    # verification distances as they were (0.641 / 0.646)
    nose_donor_sets: int = 0
    # Donor sets tried with the mouth kept and not the nose (0 = donor_sets; never fewer; issue-11m8). Set
    # through ``mouth_kept``. Leave-one-out, 120's smiling photo passed no rung of the 6 sets (every rung
    # 0.57-0.68 from her, at most 1 real face nearer: the kept mouth holds her back) and her fallback failed
    # verification's population test (0.661 from her, the nearest other face 0.667). Not the fold
    # pull-back: ``unfold_local`` 0 / 1.4 with the mouth kept left her rungs within 0.57-0.68 / 0.57-0.65.
    # Each further set is another keyed donor draw: her 12th set reaches 0.71 with 3 real faces nearer.
    # 12 (in ``mouth_kept``), eval_pixels --folds 39 --settings mouth --privacy-only: forwarded 98.7 -> 100 %,
    # r5 15.4 -> 12.8 % (same sex 17.9 -> 16.7 %), donor leak 9.0 -> 7.7 %, collisions 1.8 -> 2.0 %, sex kept
    # 98.7 % (docs/face-engine.md, issue-11m8). Only a group that passes no rung of the first 6 sets draws
    # more, at up to twice its time (rungs over the set 713 -> 1081).
    mouth_donor_sets: int = 0
    # Share of the anti-face term kept over the eyes (0 = the eyes left out, ``_anti_weight``): with the
    # nose kept the eyes carry much of the identity left (issue-11nk).
    anti_eyes: float = 0.0
    # Linkage among strangers: a rung passes only when at least this many bank identities that are not its
    # donors lie nearer to every output than the patient (surrogate_ladder._among_strangers; 0 = off). An
    # output mixed from its donors lies near them by construction, so ``population_rank``'s "3 real faces
    # nearer" was met by donors while an attacker's gallery of strangers still ranked the patient 5th or
    # nearer (issue-11nk). A rung that passes only the general test is kept as the fallback; verification's
    # population test is unchanged.
    population_strangers: int = 0
    # No beard shadow on women (issue-11n4): the share of the anti-face terms' darkening kept over the beard
    # area (below the nose: lower cheeks, upper lip, chin and jaw) when the patient is a woman (header sex,
    # else the engine's reading; surrogate_synthesis._beardless); 1 = off. A light-skinned woman's smooth,
    # light lower face, flipped, is a grey shadow over cheeks, jaw and upper lip (London-set 002, nose kept).
    # Negative flips that darkening into lightening. Only for skin at least ``anti_beard_ita`` degrees light
    # (ITA, the patient's estimate): on a dark-skinned woman (draw B's 025) the lower face's darkening reads
    # as shading, not stubble, and it is what moves her away (without it both her photos failed
    # verification, output-matches-input 0.57-0.65).
    # Unfold the target locally (issue-11n7; surrogate_target.unfold_locally) on rungs whose overshoot
    # (``Strength.push``) is at most this (negative = off): a warp triangle that folds pulls back only its own
    # landmarks towards the patient's, not the whole target. With the nose kept the whole-target pull-back
    # (0.75 a step, up to 6 steps) took the strong rungs back to 0.18-0.42 of their change (083: 2-5 steps on
    # rungs 1-3, 6 on rungs 4-9, for folds at the mouth corners and brow ends against the outline), so no
    # rung moved the face farther than the first. On the overshoot rungs as well (1.4) it turned 001 into a
    # distorted face (wavy brows, twisted eyes and mouth). Off: at 0 (plain rungs only), eval_pixels --folds
    # 39 --settings nose --privacy-only, main -> 0: forwarded 76.9 -> 87.2 %, r1 / r5 14.1 / 64.1 -> 9.0 /
    # 61.5 %, but collisions 6.1 -> 8.2 %, sex kept 89.7 -> 87.2 % and deformed faces on the sheets (042,
    # 114, 022; docs/face-engine.md, issue-11n7).
    unfold_local: float = -1.0
    # Bound the target shape to the bank's faces (issue-11n9; surrogate_bound.py): a rung whose target folds
    # a warp triangle is made again with the target, before the patient's expression is put back, held
    # within this many times the bank's farthest face in the principal directions of the bank's
    # Procrustes-aligned 68-point shapes (Mahalanobis norm, 98 % of their variance) and off them (the
    # residual), the kept region's landmarks held; what still folds is pulled back as before
    # (``_without_folds``); a rung that folds nothing is main's. 0 = off. With the nose kept the ladder's
    # targets lie at norms 7-47 / residuals 36-420 px (001), real faces the model never saw within 7.7 /
    # 22 px, and the fold pull-back took the strong rungs back to 0.18 of their change (11n7). On every rung
    # (1; --folds 39 nose): forwarded 76.9 -> 80.8 %, but 8 photos main forwarded were lost (038, 067, ...).
    shape_bound: float = 0.0
    # The second pass's pick checked by verification itself (issue-11n10; 0 = off): when no donor set of the
    # first pass passes the self-check, every set's attempt of both passes is a candidate, ranked as the
    # ladder ranks them (the ladder's pick first), and the first whose finished crops pass
    # ``faces.verify.verify_face`` run on the crop (HOG re-detection, threshold + margin, the patient's other
    # photos, the population test: the gateway's own check, untouched) is used; none: the ladder's pick
    # (verification quarantines it). The self-check re-fits landmarks in the target's box and can misread a
    # bounded rung: 067's read 0.84 from him with 36 faces nearer, verification 0.50 (main's 0.69 attempt
    # verified). Groups whose first pass passes a set are untouched (their outputs are main's, bit for bit).
    # 2: every rung tried in either pass whose outputs the self-check read beyond verification's distance
    # (less 0.02) is a candidate as well (001: only two rungs of 120 verify, both matched a donor).
    verified_pick: int = 0
    # Donor sets drawn in shape_bound's second pass (issue-11n10; 0 = as in the first: donor_sets, or
    # nose_donor_sets with the nose kept): the first pass's keyed sets again, then further keyed sets.
    bound_donor_sets: int = 0
    anti_beard: float = 1.0
    anti_beard_ita: float = 28.0
    # Who solves the Poisson blend (issue-11t5): "sine" = anonymizer.poisson (scipy's DST-I, ~3x cheaper), or
    # "opencv" = cv2.seamlessClone. The same equation; the solutions differ by OpenCV's float32 rounding, so
    # 1-9 % of the blended values differ by one grey level, none by more.
    poisson_solver: str = "sine"
    # The anti-face move away from a repelled donor (every rung after an output matched a bank face) with its
    # wide band blurred at reduced size (surrogate_texture._anti_face ``reduced``; issue-11t9): ~17 of its
    # ~21 ms per donor and rung are the full-size kernel (σ = 0.25 × inter-ocular), and the timing photo's
    # slowest seed climbs 51 rungs (5.6-5.8 s on, 6.3-6.5 s off). Off: it moves a repelled rung's texture by
    # under a level, which re-rolls knife-edge decisions (issue-11t5): eval_pixels --folds 39 --settings
    # mouth --privacy-only, off -> on: r5 11.5 -> 12.8 %, same-sex r5 15.4 -> 20.5 %, collisions 1.8 -> 1.7
    # %, the rest equal; rungs ~1,081 -> 1,010 (docs/face-engine.md, issue-11t9). Other settings not run.
    repel_reduced_blur: bool = False
    # The patient's own anti-face term (once per group, surrogate_synthesis._peer_base) with its wide band
    # blurred at reduced size, as ``repel_reduced_blur`` does for a repelled donor (issue-11t13): ~20 ms on
    # every group. It moves every output's texture by under a level, so it re-rolls knife-edge groups.
    patient_reduced_blur: bool = False
    # Rungs judged on a preview (issue-11t11; "" = off): each rung (after one that clearly failed) is first
    # made as named here (comma-separated: "half" = warp, colour and blend at half the crop size; parts left
    # out: "detail", "relight", "highlights", "features", "poisson" = the shaded face laid in without the
    # solve) and self-checked; when that preview clearly fails (a donor matched, or too few real faces
    # nearer, or nearer the patient than self_check_distance - preview_margin; no output within the margin
    # of the donor distance; the sex kept), its reading stands for the rung's and the full rung is not
    # made. A rung that may pass, and the rung the ladder returns, are always made and judged in full
    # (surrogate_ladder._previewed, _in_full). Off: "relight,highlights,features" costs 70 % of a rung and
    # loses time on 4 of 5 timing seeds; "half" ~50 % (docs/face-engine.md, issue-11t11). "half" on with
    # the mouth kept (``mouth_kept``; the lead, 2026-12-01): eval_pixels --folds 39 --settings mouth
    # --privacy-only, off -> on: 3 of 39 groups change (017 069 123), r5 11.5 -> 10.3 %, same-sex r5 15.4 ->
    # 14.1 %, collisions 1.8 -> 1.9 %, forwarded, de-ID, r1, sex kept and donor leak equal; the timing
    # photo's median seed ~0.1 s less. Also on with nothing kept (``nothing_kept``): 1 of 39 groups changes
    # (123), collisions 2.7 -> 2.6 %, the rest equal. Off with the eyes kept: forwarded 100 -> 98.7 %, donor
    # leak 10.3 -> 12.8 % (r5 20.5 -> 16.7 %); the nose kept not run (2 of the 22 hashed outputs change).
    preview_rungs: str = ""
    preview_margin: float = 0.02
    # The patient's hair kept where it hangs below the fringe line towards the brows and at the temples
    # (surrogate_colour.hanging_hair, issue-11q7). Off: a strand of fringe inside the blend domain is cut at
    # a fixed row 0.15 × inter-ocular over the brows and the synthetic skin under it shows as a square notch
    # in the hair (London-set 067). On (issue-11q8): the strands are laid over the blended crop by their
    # darkness (surrogate_colour.hanging_matte), so the skin between them stays synthetic and their tips fade
    # (11q7's hard mask kept 003's own lighter skin between the tips as stripes ending in a straight line).
    # Default on (issue-11q8): the paired run on every patient whose output visibly changes (003 067 005 113
    # 124, all four settings) moved one output each way (003: mouth r5 out, nose r5 in).
    hanging_fringe: bool = True
    # Clean-shaven surrogates (surrogate_shaven, issue-11q7): for a man whose chin is no grainier than
    # ``shave_grain`` × his upper cheeks, ``shave`` (0-1) of the way to the skin around it for the donors'
    # moustache and stubble over the lower face. 0 = off: the bank's men are mostly stubbled, and a
    # clean-shaven man (067) got a moustache. On the group's shape-free texture: 024 0.74, 067 0.87, 017 1.16,
    # stubbled 005 1.20, 041 2.06 (on single aligned crops women and clean-shaven men 0.7-1.2, stubbled men
    # 1.3-3.3). On (1.0) through ``nothing_kept``, ``mouth_kept`` and ``eyes_kept`` (the lead, fifth session):
    # it acts on 024, 067, 069, 114 and 138; eval_pixels --folds 39 --privacy-only, those five rerun on the
    # final main, main -> on: nothing collisions 2.6 -> 2.7 %, mouth 1.9 -> 1.8 %, eyes r1 0 -> 1.3 % and r5
    # 21.8 -> 20.5 %, every other cell kept. Not with the nose kept: there 114's two (quarantined) outputs
    # came within 0.6 of him (de-ID 98.7 -> 97.4 %).
    shave: float = 0.0
    shave_grain: float = 1.0
    # Distinct patients by what was issued (issue-11c9, anonymizer.issued): with a store of the synthetic
    # identities already issued (SurrogateEngine.issued), a rung that passes every other test but whose
    # outputs lie within this dlib distance of another patient's issued identity (the mean of that group's
    # outputs) does not pass, and the ladder climbs on for at most ``issued_rungs`` further rungs (across
    # donor sets; a remade keyed step counts as one). Never quarantines a photo by itself; verification is
    # untouched; the patient's own record never counts. 0 = off (also without a store). Off by default:
    # eval_pixels --folds 39 --settings nothing --privacy-only --issued (one process), main -> 0.6 with the
    # values below: collisions 2.7 -> 1.7 %, r5 10.3 -> 11.5 %, judgements 289 -> ~457; the 1 % goal is not
    # met (11 of 39 groups find no rung clear of them within the budget), and with a hospital's thousands of
    # patients nearly every group would (docs/face-engine.md, issue-11c9).
    issued_distance: float = 0.0
    issued_rungs: int = 12
    # When no rung within the budget avoids them: "first", the ladder's pick without a store; "farthest",
    # of the rungs that passed every other test, the one whose nearest issued identity is farthest.
    issued_fallback: str = "farthest"
    # A rung that passed but lies near an issued identity is first made again with the patient's further
    # keyed shape steps (``spread_shape_variants``; each counts against ``issued_rungs``).
    issued_variants: bool = True
    # The dark part of each synthetic eye (iris, pupil) darkened ``iris_darken`` (0-1) of the way to the
    # patient's mean lightness there, never lightened and by at most FEATURE_SHIFT levels (match_features,
    # issue-11q9). 0 = off: the dark part takes the patient's hue only (lifting it turns the eye glassy), so
    # a light donor iris stayed light and a dark-eyed man (067) got grey-blue irises.
    iris_darken: float = 0.0
    # Distinct patients by the cloud's width (issue-11c10): different patients' outputs lie 0.805 apart
    # against real faces' 0.849, because every output sits nearer its sex's synthetic centre than real faces
    # sit to theirs (issue-11c7). A rung that passes the self-check is made again with up to this many of the
    # patient's further keyed shape steps (``spread_shape_variants``); of those that pass the same self-check,
    # the one whose nearest output lies farthest from the centre of the patient's sex in ``spread_pick_cloud``
    # is used. Keyed and order-free: no other patient's output is consulted. 0 = off.
    spread_pick: int = 0
    # An .npz of synthetic descriptors of the bank's own identities (``ids``, ``desc``: the engine run over
    # the bank leave-one-out, bench/synthetic_cloud.py); the centre is the mean over the identities of the
    # patient's sex present in the bank (so a bank identity that is the patient never counts). "" = the
    # bank's real faces of that sex (the centre self_check_centre_distance uses).
    spread_pick_cloud: str = ""
    # Strong rungs' texture (issue-11q10; 0 = off): the anti-face terms together (the patient's and the
    # repelled donors', × the rung's gain) soft-limited to this many 8-bit lightness levels (x → cap ·
    # tanh(x / cap)), on a rung whose gain could carry them past it (anti × ANTI_CLIP > cap). The nose-kept
    # strong rungs (anti 3-3.6, soft limit 45) flip the patient's light lids and under-eyes into bruise-like
    # rings, his dark brows into a pale skin band, his cheeks' shading into flat pale patches.
    anti_cap: float = 0.0
    # anti_cap only in the finish (surrogate_ladder._finished: the chosen rung made again, kept when the
    # group's self-check is no worse), so the choice of rung and donor set stays the one made without it
    anti_cap_finish: bool = False
    # The free mouth's corners moved this share of the way to the patient's corner lift (how far they lie
    # above the lips' middle; surrogate_mouth.keep_corners), made only in the finish (0 = off): the donors'
    # caricatured mouth turns the corners down and the bench's smile probe (landmark geometry) reads 083's
    # and 042's smiles (nose kept, strong rungs) as neutral (issue-11q10).
    mouth_corners: float = 0.0
    # ``mouth_interior`` made only in the finish (0 = off): a patient whose inner lips are at least this far
    # apart gets the chosen rung's mouth interior from the donor set's most open photo. With the nose kept
    # the smiles' teeth were gone (114, 130, 022: a pink closed or blob-like mouth; issue-11q10).
    finish_interior: float = 0.0
    # A rung passes only when the bank's probe (surrogate_sex.py, margin 0) also reads every output as the
    # patient's sex, whatever ``sex_reader`` is (off: the reader alone). With the nose kept the reader is
    # the donors' centroids, and London-set 135's passing rung kept her a woman by them (-0.065 from their
    # midpoint) where the probe, and the bench's, read her smiling output as a man (issue-11s11). Unlike
    # ``sex_reader`` "both" it leaves the ranking of rungs that do not pass as it was. Off: with the nose kept
    # (--folds 39, every group it can move rerun, joined with main) it moves 135 alone: sex kept 93.6 ->
    # 94.9 %, r5 51.3 -> 52.6 % (her ranks 3 / 6 -> 5 / 3), forwarded, collisions and donor leak kept, her
    # group through the second pass (49 -> 110 rungs).
    sex_pass_probe: bool = False


# The settings that hold (NAME, VALUE) pairs applied per kept region (SurrogateEngine._for_regions).
KEPT_OVERRIDES = ("region_kept", "nose_kept", "eyes_kept", "nothing_kept", "mouth_kept")
