/* The registered stages of the publish pipeline (pipeline.h). */
#include "mqtt/pipeline.h"

moat_err moat_pipeline_add_guard(struct moat_pipeline *p, const char *name, moat_pub_guard_fn fn,
				 void *arg)
{
	if (p == NULL || name == NULL || fn == NULL)
		return MOAT_E_INVAL;
	if (p->n_guards >= MOAT_PIPELINE_MAX_STAGES)
		return MOAT_E_LIMIT;
	p->guards[p->n_guards].name = name;
	p->guards[p->n_guards].fn = fn;
	p->guards[p->n_guards].arg = arg;
	p->n_guards++;
	return MOAT_OK;
}

moat_err moat_pipeline_add_tap(struct moat_pipeline *p, const char *name, moat_pub_tap_fn fn,
			       void *arg)
{
	if (p == NULL || name == NULL || fn == NULL)
		return MOAT_E_INVAL;
	if (p->n_taps >= MOAT_PIPELINE_MAX_STAGES)
		return MOAT_E_LIMIT;
	p->taps[p->n_taps].name = name;
	p->taps[p->n_taps].fn = fn;
	p->taps[p->n_taps].arg = arg;
	p->n_taps++;
	return MOAT_OK;
}

bool moat_pipeline_guard(const struct moat_pipeline *p, const struct moat_pub_view *pv,
			 struct moat_pub_verdict *v)
{
	size_t i;

	for (i = 0; i < p->n_guards; i++) {
		v->reason = 0x80; /* unspecified, unless the stage says */
		v->disconnect = false;
		v->why = p->guards[i].name;
		if (!p->guards[i].fn(p->guards[i].arg, pv, v))
			return false;
	}
	return true;
}

void moat_pipeline_tap(const struct moat_pipeline *p, const struct moat_pub_view *pv)
{
	size_t i;

	for (i = 0; i < p->n_taps; i++)
		p->taps[i].fn(p->taps[i].arg, pv);
}
